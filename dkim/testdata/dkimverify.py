#!/usr/bin/python3
# dkimverify.py DNSFILE < MESSAGE: verify every DKIM-Signature of MESSAGE with dkimpy (Debian's
# python3-dkim), answering its DNS queries from DNSFILE (JSON: name -> TXT value) instead of the
# network. Prints one line per signature ("ok" or "fail", its d=, s= and a=); exits 0 only when
# there is at least one signature and every one verifies.
import json
import sys

import dkim

records = json.load(open(sys.argv[1]))
queried = []


def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    queried.append(n)
    v = records.get(n)
    return v.encode() if v is not None else None


msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg, minkey=1024)
count = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
ok = count > 0
for i in range(count):
    try:
        good = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        good = False
        print("error", e)
    tags = d.signature_fields
    print("ok" if good else "fail", tags.get(b"d", b"").decode(), tags.get(b"s", b"").decode(), tags.get(b"a", b"").decode())
    ok = ok and good
print("queried", " ".join(queried))
sys.exit(0 if ok else 1)
