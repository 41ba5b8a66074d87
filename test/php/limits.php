<?php
// Backend output at and just past muxgate's limits, chosen by ?case=: part sizes, boundary lengths.
$token = $_SERVER['MULTIPLEX_TOKEN'];
switch ($_GET['case'] ?? '') {
    case 'big-part':
        // A part of exactly ?max bytes (delivered), then one of ?max + 1 (rejected with all that follows).
        $max = (int)$_GET['max'];
        header('Content-Type: application/x-multiplex; boundary=bp');
        echo "--bp\r\nMultiplex-Token: $token\r\n\r\nbefore|\r\n";
        echo "--bp\r\nMultiplex-Token: $token\r\n\r\n" . str_repeat('x', $max) . "\r\n";
        echo "--bp\r\nMultiplex-Token: $token\r\n\r\n" . str_repeat('y', $max + 1) . "\r\n";
        echo "--bp\r\nMultiplex-Token: $token\r\n\r\n|after\r\n";
        echo "--bp--\r\n";
        break;
    case 'boundary':
        $boundary = str_repeat('b', (int)$_GET['length']);
        header("Content-Type: application/x-multiplex; boundary=$boundary");
        echo "--$boundary\r\nMultiplex-Token: $token\r\n\r\nboundary ok\r\n--$boundary--\r\n";
        break;
}
