<?php
// The WebSocket messages rows' script behind Pushpin (WebSocket-over-HTTP, through nginx): each request carries
// events (`TYPE[ <hex length>]\r\n[<content>\r\n]`); OPEN is accepted, each text or binary message comes back to the
// client, CLOSE is acknowledged.
header('Content-Type: application/websocket-events');
$body = file_get_contents('php://input');
$at = 0;
while ($at < strlen($body)) {
    $end = strpos($body, "\r\n", $at);
    if ($end === false) break;
    [$type, $hex] = array_pad(explode(' ', substr($body, $at, $end - $at), 2), 2, null);
    $at = $end + 2;
    $content = '';
    if ($hex !== null) {
        $content = substr($body, $at, hexdec($hex));
        $at += strlen($content) + 2;
    }
    if ($type === 'OPEN') echo "OPEN\r\n";
    elseif ($type === 'TEXT' || $type === 'BINARY') echo "$type ", dechex(strlen($content)), "\r\n$content\r\n";
    elseif ($type === 'CLOSE') echo "CLOSE\r\n";
}
