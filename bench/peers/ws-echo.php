<?php
// The WebSocket messages rows' script behind muxgate: the opening is accepted (an empty held stream), each message
// the client sends comes back to it as a reply (a part to its own token).
header('Content-Type: application/x-multiplex; boundary=bb');
$token = $_SERVER['MULTIPLEX_TOKEN'] ?? '';
if (($_SERVER['MULTIPLEX_EVENT'] ?? '') === 'message') {
    echo "--bb\r\nMultiplex-Token: $token\r\n\r\n", file_get_contents('php://input'), "\r\n--bb--\r\n";
} else {
    header('Multiplex-Hold: stream');
    echo "--bb--\r\n";
}
