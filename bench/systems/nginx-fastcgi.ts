// nginx `fastcgi_pass` in front of php-fpm: the request-path peer of muxgate.
import { startNginx, type Nginx } from './nginx.ts';

/** keepalive: idle FastCGI connections each worker keeps open (`fastcgi_keep_conn on`); 0: a connection per request. */
export function start(workers: number, fpmPort: number, script: string, keepalive = 0): Promise<Nginx> {
  return startNginx('nginx-fastcgi.conf.template', {
    WORKERS: workers, FPM_PORT: fpmPort, SCRIPT: script,
    UPSTREAM_KEEPALIVE: keepalive > 0 ? `keepalive ${keepalive};` : '', KEEP_CONN: keepalive > 0 ? 'on' : 'off',
  });
}
