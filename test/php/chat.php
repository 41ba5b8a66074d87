<?php
// The chat of the original mod_multiplex proposal: readers hold streams, a sender's single
// multiplexed answer feeds every reader and gives the sender its own plain reply.
$token = $_SERVER['MULTIPLEX_TOKEN'];
$list = getenv('CHAT_STATE_DIR') . '/readers.txt';
$boundary = 'chat' . bin2hex(random_bytes(8));
header("Content-Type: application/x-multiplex; boundary=$boundary");
if ($_SERVER['REQUEST_METHOD'] === 'GET') {
    file_put_contents($list, "$token\n", FILE_APPEND | LOCK_EX);
    header('Multiplex-Hold: stream');
    echo "--$boundary\r\nMultiplex-Token: $token\r\n\r\nwelcome\n\r\n--$boundary--\r\n";
    exit;
}
$message = file_get_contents('php://input');
$readers = file($list, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [];
header('Multiplex-Content-Type: text/plain; charset=utf-8');
echo "--$boundary\r\nMultiplex-Token: " . implode(', ', $readers) . "\r\n\r\n$message\n\r\n";
echo "--$boundary\r\nMultiplex-Token: $token\r\n\r\nsent to " . count($readers) . " readers\n\r\n";
echo "--$boundary--\r\n";
