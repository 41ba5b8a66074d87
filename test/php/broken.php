<?php
// Malformed backend output, chosen by ?case=, for the gateway's fault handling.
$token = $_SERVER['MULTIPLEX_TOKEN'];
switch ($_GET['case'] ?? '') {
    case 'no-boundary':
        header('Content-Type: application/x-multiplex');
        echo "--x\r\n\r\nhello\r\n--x--\r\n";
        break;
    case 'truncated':
        header('Content-Type: application/x-multiplex; boundary=tb');
        echo "--tb\r\nMultiplex-Token: $token\r\n\r\nfirst\r\n--tb\r\nMultiplex-Token: $token\r\n\r\nunfinished";
        break;
    case 'garbage':
        header('Content-Type: application/x-multiplex; boundary=gb');
        echo "--gb\r\nMultiplex-Token: $token\r\n\r\nfirst\r\n--gbGARBAGE\r\n\r\nsecond\r\n--gb--\r\n";
        break;
    case 'bare-lf':
        // A part header value copied from user input with CRLF stripped but not a lone LF, naming another stream.
        header('Content-Type: application/x-multiplex; boundary=lf');
        echo "--lf\r\nMultiplex-Channel: x\nMultiplex-Token: {$_SERVER['HTTP_X_VICTIM']}\r\n\r\nstolen\r\n--lf--\r\n";
        break;
    case 'part-header':
        // A part whose header line is the request's X-Part-Header, as a backend might copy it from user input.
        header('Content-Type: application/x-multiplex; boundary=ph');
        echo "--ph\r\n{$_SERVER['HTTP_X_PART_HEADER']}\r\n\r\nx\r\n--ph--\r\n";
        break;
    case 'keep-alive':
        header('Content-Type: application/x-multiplex; boundary=ka');
        header('Multiplex-Keep-Alive: ' . $_SERVER['HTTP_X_KEEP_ALIVE']);
        echo "--ka--\r\n";
        break;
    case 'bad-hold':
        header('Content-Type: application/x-multiplex; boundary=hb');
        header('Multiplex-Hold: forever');
        echo "--hb--\r\n";
        break;
    case 'slow':
        sleep((int)($_GET['seconds'] ?? 5));
        echo "late\n";
        break;
    case 'exit':
        exit(0);
}
