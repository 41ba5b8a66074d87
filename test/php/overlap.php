<?php
// Sleeps ?ms= milliseconds, answers "done <?n=>", and appends "<start> <end>" (microseconds) to the file named by OVERLAP_LOG: how many
// requests the backend ran at once can be read from it.
$start = microtime(true);
usleep(1000 * (int)($_GET['ms'] ?? 20));
file_put_contents(getenv('OVERLAP_LOG'), sprintf("%d %d\n", $start * 1e6, microtime(true) * 1e6), FILE_APPEND | LOCK_EX);
header('Content-Type: text/plain');
echo "done " . ($_GET['n'] ?? '') . "\n";
