// k6's closed model for bench/load-compare.sh: each VU GETs the URL back to back.
import http from 'k6/http';

export default function () {
  http.get(__ENV.URL);
}
