"""Seeds a gpud with fine-tuning jobs through its API, then times GET /v1/fine_tuning/jobs?limit=20 (see bench-jobs-list)."""
import http.client
import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

base, jobs, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host = urlparse(base)


def connection():
    return http.client.HTTPConnection(host.hostname, host.port, timeout=60)


def upload(conn, lines):
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n' + lines + f'\r\n--{boundary}--\r\n').encode()
    conn.request('POST', '/v1/files', body, {'Content-Type': f'multipart/form-data; boundary={boundary}'})
    return json.loads(conn.getresponse().read())['id']


example = lambda i: json.dumps({'messages': [{'role': 'user', 'content': f'q{i}'}, {'role': 'assistant', 'content': f'a{i}'}]})
conn = connection()
too_few = upload(conn, '\n'.join(example(i) for i in range(5)) + '\n')  # fails validation: invalid_n_examples
good = upload(conn, '\n'.join(example(i) for i in range(20)) + '\n')  # validates and stays queued (no device)


def create(range_):
    c = connection()
    for i in range_:
        body = json.dumps({'model': 'gpud-tiny', 'training_file': good if i % 100 == 0 else too_few, 'metadata': {'i': str(i)}})
        c.request('POST', '/v1/fine_tuning/jobs', body, {'Content-Type': 'application/json'})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status


start = time.perf_counter()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(create, [range(k, jobs, 8) for k in range(8)]))
print(f'created_jobs={jobs} seconds={time.perf_counter() - start:.1f}')

# Wait until validation has processed every job (the list then reflects the final statuses).
while True:
    conn.request('GET', '/metrics')
    text = conn.getresponse().read().decode()
    validating = next((float(l.split()[-1]) for l in text.splitlines() if l.startswith('gpud_fine_tuning_jobs{status="validating_files"}')), 0)
    if validating == 0:
        break
    time.sleep(0.5)

timings = []
for i in range(requests + 50):
    t = time.perf_counter()
    conn.request('GET', '/v1/fine_tuning/jobs?limit=20')
    r = conn.getresponse()
    page = json.loads(r.read())
    if i >= 50:  # the first 50 warm up the JIT and the connection pool
        timings.append((time.perf_counter() - t) * 1000)
    assert r.status == 200 and len(page['data']) == 20
queued = sum(1 for j in page['data'] if j['status'] == 'queued')
timings.sort()
print(f'list_limit_20_median_ms={statistics.median(timings):.2f} p95_ms={timings[int(len(timings) * 0.95)]:.2f} '
      f'requests={requests} queued_in_page={queued}')
