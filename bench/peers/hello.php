<?php
// The request-path script: a small plain response, the same behind muxgate and behind nginx.
header('Content-Type: text/plain');
echo "hello from php-fpm\n";
