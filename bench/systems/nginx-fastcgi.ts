// nginx `fastcgi_pass` in front of php-fpm: the request-path peer of muxgate.
import { startNginx, type Nginx } from './nginx.ts';

export function start(workers: number, fpmPort: number, script: string): Promise<Nginx> {
  return startNginx('nginx-fastcgi.conf.template', { WORKERS: workers, FPM_PORT: fpmPort, SCRIPT: script });
}
