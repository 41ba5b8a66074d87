<?php
// Appends each request's REQUEST_URI to the file named by REQUEST_LOG and answers its CGI params as JSON:
// a request smuggled past muxgate to the backend would show up in that file.
file_put_contents(getenv('REQUEST_LOG'), $_SERVER['REQUEST_URI'] . "\n", FILE_APPEND | LOCK_EX);
header('Content-Type: application/json');
echo json_encode(['server' => $_SERVER]);
