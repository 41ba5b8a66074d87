<?php
// A multiplexed response shaped by the query: hold mode, client type, keep-alive, timeout.
// Its own first part tells the client its token, so that a test can push to it.
$token = $_SERVER['MULTIPLEX_TOKEN'];
if (isset($_SERVER['MULTIPLEX_EVENT'])) {
    // A stream event (MUX_EVENTS): record it, and when it ran, for the test to read.
    $started = microtime(true);
    usleep((int)($_GET['eventsleep'] ?? 0));
    $timing = isset($_GET['eventsleep']) ? sprintf(' %.6f %.6f', $started, microtime(true)) : '';
    $line = "{$_SERVER['MULTIPLEX_EVENT']} $token {$_SERVER['MULTIPLEX_REASON']} {$_SERVER['REQUEST_URI']}$timing\n";
    file_put_contents(getenv('EVENT_LOG'), $line, FILE_APPEND | LOCK_EX);
    exit;
}
$boundary = 'b' . bin2hex(random_bytes(8));
header("Content-Type: application/x-multiplex; boundary=$boundary");
if (isset($_GET['hold'])) header('Multiplex-Hold: ' . $_GET['hold']);
if (isset($_GET['type'])) header('Multiplex-Content-Type: ' . $_GET['type']);
if (isset($_GET['keepalive'])) header('Multiplex-Keep-Alive: ' . $_GET['keepalive']);
if (isset($_GET['timeout'])) header('Multiplex-Timeout: ' . $_GET['timeout']);
if (isset($_GET['status'])) header('Status: ' . $_GET['status']);
if (isset($_GET['channel'])) header('Multiplex-Channel: ' . $_GET['channel']);
header('X-Backend: php');
header("X-Token: $token");
if (!isset($_GET['silent'])) {
    echo "--$boundary\r\nMultiplex-Token: $token\r\n\r\ntoken=$token\n\r\n";
}
echo "--$boundary--\r\n";
