<?php
// A cron job in PHP: tells a demo chat room the time, through muxgate's push API.
// usage: php announce.php ROOM   (env: MUX_PUSH_URL, MUX_PUSH_SECRET)
$room = $argv[1] ?? 'lobby';
$url = getenv('MUX_PUSH_URL') ?: 'http://127.0.0.1:8081/push';
$event = "event: message\ndata: " . json_encode(['nick' => 'cron', 'text' => 'It is ' . date('H:i') . '.', 'at' => time() * 1000]) . "\n\n";
$boundary = bin2hex(random_bytes(8));
$body = "--$boundary\r\nMultiplex-Channel: room-$room\r\n\r\n$event\r\n--$boundary--\r\n";
$headers = "Content-Type: application/x-multiplex; boundary=$boundary\r\n";
if (getenv('MUX_PUSH_SECRET')) $headers .= 'Authorization: Bearer ' . getenv('MUX_PUSH_SECRET') . "\r\n";
$answer = file_get_contents($url, false, stream_context_create(['http' => [
    'method' => 'POST', 'header' => $headers, 'content' => $body, 'ignore_errors' => true,
]]));
// {"parts":1,"deliveries":N,"gone":[],"channels":{"room-lobby":N}}: N browsers got it.
echo $answer;
exit(str_starts_with($http_response_header[0] ?? '', 'HTTP/1.1 200') ? 0 : 1);
