<?php
// A body written bit by bit with pauses, for tests that kill the backend in the middle of a response.
// ?kind=plain: an ordinary text/plain body, one line at a time;
// ?kind=multiplex: a multiplexed body whose parts (to the requester's own token) come one at a time
//   (&hold= sets Multiplex-Hold);
// ?kind=silent: nothing at all (no response head) until the end.
// ?count= pieces (default 100), ?pause= milliseconds between them (default 100).
// It first appends its REQUEST_URI to the file named by REQUEST_LOG, if set: a test can wait for it to have started.
if (getenv('REQUEST_LOG') !== false) file_put_contents(getenv('REQUEST_LOG'), $_SERVER['REQUEST_URI'] . "\n", FILE_APPEND | LOCK_EX);
$token = $_SERVER['MULTIPLEX_TOKEN'];
$kind = $_GET['kind'] ?? 'plain';
$count = (int)($_GET['count'] ?? 100);
$pause = 1000 * (int)($_GET['pause'] ?? 100);
if ($kind === 'silent') {
    usleep($count * $pause);
    echo "late\n";
    exit;
}
if ($kind === 'multiplex') {
    header('Content-Type: application/x-multiplex; boundary=sb');
    if (isset($_GET['hold'])) header('Multiplex-Hold: ' . $_GET['hold']);
    header("X-Token: $token");
    // Each write ends with the part's closing delimiter, so that muxgate delivers the part at once.
    echo "--sb";
    for ($i = 0; $i < $count; $i++) {
        echo "\r\nMultiplex-Token: $token\r\n\r\npart $i\n\r\n--sb";
        flush();
        usleep($pause);
    }
    echo "--\r\n";
    exit;
}
header('Content-Type: text/plain');
for ($i = 0; $i < $count; $i++) {
    echo "line $i\n";
    flush();
    usleep($pause);
}
