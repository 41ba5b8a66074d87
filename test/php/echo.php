<?php
// Echoes the CGI params muxgate sent, as JSON.
header('Content-Type: application/json');
echo json_encode($_SERVER);
