// k6's open model for bench/open-compare.sh: constant-arrival-rate, one GET per iteration.
import http from 'k6/http';

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['p(50)', 'p(99)', 'count'],
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE),
      timeUnit: '1s',
      duration: `${__ENV.DURATION}s`,
      preAllocatedVUs: Number(__ENV.VUS),
      maxVUs: Number(__ENV.VUS) * 4,
    },
  },
};

export default function () {
  http.get(__ENV.URL);
}
