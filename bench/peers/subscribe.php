<?php
// The storm rows' subscribe, as bench/backend.ts answers it: an empty held stream on ?channel=c, naming its token.
header('Content-Type: application/x-multiplex; boundary=bb');
header('Multiplex-Hold: stream');
header('X-Token: ' . ($_SERVER['MULTIPLEX_TOKEN'] ?? ''));
$channel = $_GET['channel'] ?? null;
if (is_string($channel)) {
    header('Multiplex-Content-Type: text/event-stream');
    header("Multiplex-Channel: $channel");
} else {
    header('Multiplex-Content-Type: text/plain');
}
echo "--bb--\r\n";
