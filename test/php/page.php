<?php
// An ordinary page with a Content-Length and an ETag: a 304 to a matching If-None-Match, a 204 when asked.
// PHP itself sends no body for HEAD, as a backend must.
$body = "a page of 24 characters\n";
$etag = '"v1"';
if (($_GET['status'] ?? '') === '204') {
    header('Status: 204');
    header('Content-Length: 0');
    exit;
}
header('Content-Type: text/plain');
header("ETag: $etag");
header('Content-Length: ' . strlen($body));
if (($_SERVER['HTTP_IF_NONE_MATCH'] ?? '') === $etag) {
    header('Status: 304');
    exit;
}
echo $body;
