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
