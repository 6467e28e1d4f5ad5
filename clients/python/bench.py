"""Round trip of the Python client: recall p50/p99 against a running node.

    python clients/python/bench.py https://127.0.0.1:PORT CERTS_DIR [SAMPLES]

(run by `cargo bench -p mnemo --bench http -- --python PATH_TO_PYTHON`)."""

import statistics
import sys
import time

from mnemo_client import Mnemo

url, certs = sys.argv[1], sys.argv[2]
samples = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
m = Mnemo(url, ca=f"{certs}/ca.crt", cert=(f"{certs}/client.crt", f"{certs}/client.key"))
for _ in range(samples // 10):
    m.recall("latency", "where is the meeting", k=5)
times = []
for _ in range(samples):
    start = time.perf_counter()
    m.recall("latency", "where is the meeting", k=5)
    times.append(time.perf_counter() - start)
times.sort()
p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
print(f"  python client        p50 {p50 * 1e6:>7.1f} µs  p99 {p99 * 1e6:>7.1f} µs  ({samples} samples)")
