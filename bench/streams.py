#!/usr/bin/env python3
"""Holds N message streams open through llamachatd at once (the fake
upstream holds each after its first event) and reports how many got their
first event, the first-event latency p50/p99, and the daemon's memory (PSS)
per stream. Run by bench/streams.sh; not a test."""
import json, socket, sys, time, resource, urllib.request

port, fake_port, pid, n = (int(a) for a in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_NOFILE, (min(20000, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),) * 2)

def pss():
    for line in open('/proc/%d/smaps_rollup' % pid):
        if line.startswith('Pss:'):
            return int(line.split()[1])

def post(url, body):
    req = urllib.request.Request(url, data=body.encode(), headers={'Content-Type': 'application/json'})
    return urllib.request.urlopen(req).read()

sid = json.loads(post('http://127.0.0.1:%d/api/v1/chat' % port, '{}'))['session_id']
post('http://127.0.0.1:%d/_fake/fault' % fake_port, json.dumps(
    {"method": "POST", "path": "/api/v1/chat/{id}/messages/stream", "mode": "hold", "count": n}))
body = '{"prompt":"hi","index_ids":[]}'
req = ("POST /api/v1/chat/%s/messages/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       "Content-Length: %d\r\n\r\n%s" % (sid, len(body), body)).encode()
before = pss()
socks, sent_at, firsts = [], [], []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    sent_at.append(time.monotonic())
    s.sendall(req)
    socks.append(s)
for s, t in zip(socks, sent_at):
    s.settimeout(30)
    got = b""
    try:
        while b"Hel" not in got:
            more = s.recv(4096)
            if not more:
                break
            got += more
    except OSError:
        pass
    if b"Hel" in got:
        firsts.append(time.monotonic() - t)
time.sleep(1)
after = pss()
firsts.sort()
pct = lambda q: firsts[min(len(firsts) - 1, int(q * len(firsts)))] * 1000 if firsts else float('nan')
print("| %5d | %6d | %6.1f ms | %6.1f ms | %5.1f KB |" % (n, n - len(firsts), pct(0.5), pct(0.99), (after - before) / n))
post('http://127.0.0.1:%d/_fake/release' % fake_port, '')
