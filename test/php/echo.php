<?php
// Echoes the CGI params muxgate sent and the request body, as JSON.
header('Content-Type: application/json');
$body = file_get_contents('php://input');
echo json_encode(['server' => $_SERVER, 'bodyLength' => strlen($body), 'bodyMd5' => md5($body)]);
