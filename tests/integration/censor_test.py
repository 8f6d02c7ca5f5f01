#!/usr/bin/env python3
"""The censor lab's middlebox end to end: `postern-censor run` between a user and servers abroad,
in network namespaces this test makes (and deletes, whatever happens).

Topology (names carry a random suffix):
  client ns  veth 10.10.0.2/24  --  10.10.0.1/24 (user side)  censor ns  10.20.0.1/24, prober
             10.20.0.201/24  --  server ns 10.20.0.30 (nginx, TLS on 443; the prober's baseline
             on 8443), 10.20.0.40 (a "fully encrypted" TCP server on 443 and 8443 that reads and
             never answers, logging what it receives), 10.20.0.53 (`postern-censor resolver`).
For each case the censor runs with the settings of one profile (printed by `postern-censor
profile`), and the test checks what the user sees and what the censor's events file says:
  open            curl fetches the nginx page through the middlebox
  sni-filter      a listed SNI is reset, an unlisted one passes, a retry in the penalty box is reset
  fet             64 random bytes are black-holed and never reach the server; the 3-tuple then drops
  dns-injection   a listed name gets the forged address first (then the real answer), another name the real one
  active-probing  the silent server is probed, unlike nginx, blocked (connect times out); nginx stays reachable
  ip-blocklist    a listed address times out at connect, another passes
  port-allowlist  port 443 passes, 8443 times out at connect
Every case also checks that the censor exits 0 on SIGTERM and leaves no iptables chain behind.
Needs root (namespaces, iptables): otherwise exits 77 (skipped). Standard library only; nginx is
started with site_compare.start_nginx (in the server namespace), PASS/FAIL counted by harness.

Usage: censor_test.py PATH/TO/postern-censor
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import site_compare as sc  # noqa: E402
from harness import DIRS, PROCS, check, run_main  # noqa: E402

SKIP = 77
NAMESPACES = []
SUFFIX = "%05d" % random.randrange(100000)
NS_CLIENT, NS_CENSOR, NS_SERVER = f"plc{SUFFIX}", f"plk{SUFFIX}", f"pls{SUFFIX}"
USER_IF = f"pu{SUFFIX}"  # the censor's interface towards the user
NGINX_IP, SILENT_IP, RESOLVER_IP, PROBER_IP = "10.20.0.30", "10.20.0.40", "10.20.0.53", "10.20.0.201"
CLIENT_IP = "10.10.0.2"
FORGED_IP = "10.99.0.7"
CENSOR = "postern-censor"


def in_ns(ns):
    """The command prefix that runs a program in network namespace `ns` (it execs the program, so
    a Popen's PID is the program's)."""
    return ["ip", "netns", "exec", ns]


def sh(*args, check_rc=True, ns=None, timeout=30):
    cmd = (in_ns(ns) if ns else []) + list(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stdout}")
    return r


def spawn(ns, args, **kw):
    p = subprocess.Popen(in_ns(ns) + args, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait=10):
    """Ends a process this test started (by its PID) and returns its exit code."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode


def cleanup():
    """Kills what runs in the namespaces (by PID), then deletes them (harness.run_main removes the
    directories)."""
    for p in reversed(PROCS):
        stop(p, signal.SIGKILL, 5)
    sc.cleanup()
    for ns in NAMESPACES:
        subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---- topology -------------------------------------------------------------------------------

def make_topology():
    for ns in (NS_CLIENT, NS_CENSOR, NS_SERVER):
        sh("ip", "netns", "add", ns)
        NAMESPACES.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "link", "add", f"pc{SUFFIX}", "netns", NS_CLIENT, "type", "veth", "peer", "name", USER_IF, "netns",
       NS_CENSOR)
    sh("ip", "link", "add", f"pa{SUFFIX}", "netns", NS_CENSOR, "type", "veth", "peer", "name", f"ps{SUFFIX}", "netns",
       NS_SERVER)
    sh("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", f"pc{SUFFIX}", ns=NS_CLIENT)
    sh("ip", "link", "set", f"pc{SUFFIX}", "up", ns=NS_CLIENT)
    sh("ip", "route", "add", "default", "via", "10.10.0.1", ns=NS_CLIENT)
    sh("ip", "addr", "add", "10.10.0.1/24", "dev", USER_IF, ns=NS_CENSOR)
    sh("ip", "addr", "add", "10.20.0.1/24", "dev", f"pa{SUFFIX}", ns=NS_CENSOR)
    sh("ip", "addr", "add", f"{PROBER_IP}/24", "dev", f"pa{SUFFIX}", ns=NS_CENSOR)
    sh("ip", "link", "set", USER_IF, "up", ns=NS_CENSOR)
    sh("ip", "link", "set", f"pa{SUFFIX}", "up", ns=NS_CENSOR)
    sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", ns=NS_CENSOR)
    for ip in (NGINX_IP, SILENT_IP, RESOLVER_IP):
        sh("ip", "addr", "add", f"{ip}/24", "dev", f"ps{SUFFIX}", ns=NS_SERVER)
    sh("ip", "link", "set", f"ps{SUFFIX}", "up", ns=NS_SERVER)
    sh("ip", "route", "add", "default", "via", "10.20.0.1", ns=NS_SERVER)


def start_servers(tmp):
    site = os.path.join(tmp, "site")
    os.makedirs(site)
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("<html><body>postern-lab-site</body></html>\n")
    sc.start_nginx(site, listen=[f"{NGINX_IP}:443", f"{NGINX_IP}:8443"], prefix=in_ns(NS_SERVER),
                   worker_connections=256)
    # The "fully encrypted" server: reads, never answers, appends "PORT BYTES" per read to a log.
    silent_log = os.path.join(tmp, "silent.log")
    silent = f"""
import socket, threading
def serve(port):
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('{SILENT_IP}', port)); srv.listen(64)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=hold, args=(c, port), daemon=True).start()
def hold(c, port):
    with c:  # closed when the peer closes (serve's own reference lives until the next accept)
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                return
            if not d:
                return
            with open({silent_log!r}, 'a') as f:
                f.write('%d %d\\n' % (port, len(d)))
for p in (443, 8443):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
"""
    spawn(NS_SERVER, ["python3", "-c", silent], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = spawn(NS_SERVER, [CENSOR, "resolver", "--listen", f"{RESOLVER_IP}:53", "--record", f"chat.example={NGINX_IP}",
                            "--record", f"news.example={SILENT_IP}"], stdout=subprocess.PIPE, text=True)
    line = res.stdout.readline().strip()
    check("resolver: prints 'resolver ready'", line == "resolver ready", repr(line))
    if not sc.wait_port(SILENT_IP, 443, prefix=in_ns(NS_SERVER)):
        raise RuntimeError("the silent server did not start")
    return silent_log


def silent_bytes(log, port=443):
    try:
        with open(log) as f:
            return sum(int(b) for p, b in (line.split() for line in f) if int(p) == port)
    except FileNotFoundError:
        return 0


# ---- the censor -----------------------------------------------------------------------------

class Censor:
    def __init__(self, tmp, profile, *profile_args):
        self.name = profile
        out = subprocess.run([CENSOR, "profile", profile] + list(profile_args), check=True, stdout=subprocess.PIPE,
                             text=True).stdout
        self.settings = os.path.join(tmp, f"{profile}.json")
        with open(self.settings, "w") as f:
            f.write(out)
        self.events = os.path.join(tmp, f"{profile}.events.jsonl")
        self.proc = spawn(NS_CENSOR, [CENSOR, "run", "--settings", self.settings, "--user-if", USER_IF,
                                      "--listen-port", "15001", "--dns-port", "15053",
                                      "--resolver", f"{RESOLVER_IP}:53", "--prober-address", PROBER_IP,
                                      "--baseline", f"{NGINX_IP}:8443", "--events", self.events,
                                      "--log-level", "info"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        check(f"{profile}: censor prints 'censor ready'", line == "censor ready", repr(line))

    def read_events(self):
        try:
            with open(self.events) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def wait_event(self, pred, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            for e in self.read_events():
                if pred(e):
                    return e
            time.sleep(0.2)
        return None

    def flows(self, server, port=None):
        return [e for e in self.read_events()
                if e["module"] == "flow" and e["server"] == server and (port is None or e["port"] == port)]

    def close(self):
        rc = stop(self.proc)
        check(f"{self.name}: censor exits 0 on SIGTERM", rc == 0, f"exit {rc}")
        left = sh("iptables-save", ns=NS_CENSOR, check_rc=False).stdout
        check(f"{self.name}: no POSTERN-LAB rule left", "POSTERN-LAB" not in left, left)


# ---- the user's side ------------------------------------------------------------------------

def curl(url, *extra, timeout=8):
    r = sh("curl", "-sk", "--connect-timeout", "3", "-m", str(timeout), *extra, url, ns=NS_CLIENT, check_rc=False,
           timeout=timeout + 5)
    return r.returncode, r.stdout


CLIENT_TCP = """
import json, os, socket, sys, time
ip, port, payload_hex, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket()
s.settimeout(3)
try:
    s.connect((ip, port))
except (socket.timeout, TimeoutError):
    print(json.dumps({"connect": "timeout"})); sys.exit(0)
except OSError as e:
    print(json.dumps({"connect": "error", "errno": e.errno})); sys.exit(0)
s.sendall(bytes.fromhex(payload_hex))
s.settimeout(wait)
t0 = time.time(); data = b""; end = "open"
try:
    while True:
        d = s.recv(4096)
        if not d:
            end = "fin"; break
        data += d
except (socket.timeout, TimeoutError):
    end = "open"
except ConnectionResetError:
    end = "rst"
print(json.dumps({"connect": "ok", "end": end, "bytes": len(data)}))
s.close()
"""


def tcp_probe(ip, port, payload, wait=3.0):
    r = sh("python3", "-c", CLIENT_TCP, ip, str(port), payload.hex(), str(wait), ns=NS_CLIENT, check_rc=False,
           timeout=wait + 15)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"connect": "script-failed", "output": r.stdout}


def fully_encrypted_payload(n=64):
    """Random bytes that no exemption of Wu et al.'s rule lets through (checked here)."""
    printable = lambda b: 0x20 <= b <= 0x7e
    while True:
        p = os.urandom(n)
        pop = sum(bin(b).count("1") for b in p) / n
        if pop <= 3.4 or pop >= 4.6:
            continue
        if all(printable(b) for b in p[:6]):
            continue
        if sum(printable(b) for b in p) * 2 > n:
            continue
        run = best = 0
        for b in p:
            run = run + 1 if printable(b) else 0
            best = max(best, run)
        if best > 20:
            continue
        if p[0] in (0x16, 0x17) and p[1] == 0x03 and p[2] <= 0x09:
            continue
        if p[:4] in (b"GET ", b"PUT ", b"POST", b"HEAD"):
            continue
        return p


DNS_CLIENT = """
import json, socket, struct, sys, time
server, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
qid = 0x4242
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, (server, 53))
def skip_name(m, i):
    while True:
        l = m[i]
        if l & 0xc0 == 0xc0: return i + 2
        if l == 0: return i + 1
        i += 1 + l
answers = []
for _ in range(count):
    try:
        m, src = s.recvfrom(4096)
    except (socket.timeout, TimeoutError):
        break
    rid, flags, qd, an = struct.unpack(">HHHH", m[:8])
    i = 12
    for _ in range(qd): i = skip_name(m, i) + 4
    addrs = []
    for _ in range(an):
        i = skip_name(m, i)
        t, c, ttl, l = struct.unpack(">HHIH", m[i:i + 10]); i += 10
        if t == 1 and l == 4: addrs.append(socket.inet_ntoa(m[i:i + 4]))
        i += l
    answers.append({"id": rid, "rcode": flags & 15, "from": src[0], "addrs": addrs})
print(json.dumps(answers))
"""


def dns_query(name, count=1):
    r = sh("python3", "-c", DNS_CLIENT, RESOLVER_IP, name, str(count), ns=NS_CLIENT, check_rc=False, timeout=20)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [{"error": r.stdout}]


# ---- the cases ------------------------------------------------------------------------------

def case_open(tmp):
    c = Censor(tmp, "open")
    try:
        rc, out = curl(f"https://{NGINX_IP}/")
        check("open: curl through the middlebox fetches the page", rc == 0 and "postern-lab-site" in out, f"rc={rc}")
        flow = c.wait_event(lambda e: e["module"] == "flow" and e["server"] == NGINX_IP, 5)
        check("open: a flow event with bytes both ways",
              flow is not None and flow["action"] == "pass" and "up=0 " not in flow["detail"]
              and "down=0 " not in flow["detail"], str(flow))
        answers = dns_query("chat.example")
        check("open: DNS through the injector gets the real answer",
              answers and answers[0].get("addrs") == [NGINX_IP] and answers[0].get("from") == RESOLVER_IP, str(answers))
    finally:
        c.close()


def case_sni(tmp):
    c = Censor(tmp, "sni-filter", "--known-name", "chat.example", "--sni-penalty-s", "60")
    try:
        rc, out = curl("https://other.example/", "--resolve", f"other.example:443:{NGINX_IP}")
        check("sni-filter: an unlisted name passes", rc == 0 and "postern-lab-site" in out, f"rc={rc}")
        rc, out = curl("https://chat.example/", "--resolve", f"chat.example:443:{NGINX_IP}")
        check("sni-filter: a listed name is reset", rc in (35, 56), f"rc={rc}")
        e = c.wait_event(lambda e: e["module"] == "sni" and e["action"] == "rst", 3)
        check("sni-filter: an sni/rst event names it", e is not None and "chat.example" in e["detail"], str(e))
        rc, out = curl("https://other.example/", "--resolve", f"other.example:443:{NGINX_IP}")
        # The reset comes right after the handshake, before curl's ClientHello: "couldn't connect" (7).
        check("sni-filter: a retry in the penalty box is reset too", rc in (7, 35, 56), f"rc={rc}")
        e = c.wait_event(lambda e: e["module"] == "sni-penalty" and e["action"] == "rst", 3)
        check("sni-filter: a penalty-box event", e is not None, str(c.read_events()))
        resets = [f for f in c.flows(NGINX_IP, 443) if f["action"] == "rst"]
        check("sni-filter: both resets logged as flows", len(resets) == 2, str(resets))
    finally:
        c.close()


def case_fet(tmp, silent_log):
    c = Censor(tmp, "fet", "--fet-residual-s", "60")
    try:
        before = silent_bytes(silent_log)
        r = tcp_probe(SILENT_IP, 443, fully_encrypted_payload(), wait=3)
        check("fet: random bytes are black-holed (connection open, no answer, no reset)",
              r.get("connect") == "ok" and r.get("end") == "open", str(r))
        e = c.wait_event(lambda e: e["module"] == "fet" and e["action"] == "blackhole", 3)
        check("fet: a fet/blackhole event", e is not None and e["server"] == SILENT_IP, str(e))
        time.sleep(0.5)
        check("fet: the flow's bytes never reach the server", silent_bytes(silent_log) == before,
              f"{silent_bytes(silent_log) - before} bytes arrived")
        r = tcp_probe(SILENT_IP, 443, b"hello", wait=1)
        check("fet: a second connection on the 3-tuple times out at connect", r.get("connect") == "timeout", str(r))
        # Printable bytes are exempt (Ex2..Ex4): passed, and they arrive (another port: not the dropped 3-tuple).
        before8443 = silent_bytes(silent_log, 8443)
        r = tcp_probe(SILENT_IP, 8443, b"hello, this is plain text that is exempt" * 2, wait=1)
        time.sleep(0.5)
        check("fet: an exempt first flight passes and arrives",
              r.get("connect") == "ok" and silent_bytes(silent_log, 8443) - before8443 == 80, str(r))
    finally:
        c.close()
    flows = [f for f in c.flows(SILENT_IP, 443) if f["action"] == "blackhole"]
    check("fet: the black-holed flow is logged with its dropped bytes",
          len(flows) == 1 and "up=0 " in flows[0]["detail"] and "dropped=64 " in flows[0]["detail"], str(flows))


def case_dns(tmp):
    c = Censor(tmp, "dns-injection", "--known-name", "chat.example", "--forged", FORGED_IP)
    try:
        answers = dns_query("chat.example", count=2)
        check("dns-injection: a listed name gets the forged address first",
              len(answers) >= 1 and answers[0].get("addrs") == [FORGED_IP] and answers[0].get("id") == 0x4242,
              str(answers))
        check("dns-injection: the real answer follows (the forged one won the race)",
              len(answers) == 2 and answers[1].get("addrs") == [NGINX_IP], str(answers))
        check("dns-injection: answers come from the address the user asked",
              all(a.get("from") == RESOLVER_IP for a in answers), str(answers))
        answers = dns_query("news.example")
        check("dns-injection: another name gets the real answer",
              answers and answers[0].get("addrs") == [SILENT_IP], str(answers))
        answers = dns_query("nowhere.example")
        check("dns-injection: an unknown name is NXDOMAIN from the lab resolver",
              answers and answers[0].get("rcode") == 3, str(answers))
        e = c.wait_event(lambda e: e["module"] == "dns" and e["action"] == "forged", 3)
        check("dns-injection: a dns/forged event", e is not None and "chat.example" in e["detail"], str(e))
        forged = [e for e in c.read_events() if e["module"] == "dns"]
        check("dns-injection: only the listed name was forged", len(forged) == 1, str(forged))
    finally:
        c.close()


def case_probing(tmp):
    c = Censor(tmp, "active-probing", "--probe-delay-ms", "200", "--probe-window-ms", "1500",
               "--address-block-s", "120")
    try:
        r = tcp_probe(SILENT_IP, 443, fully_encrypted_payload(), wait=1)
        check("active-probing: the first connection to the silent server gets through", r.get("connect") == "ok",
              str(r))
        e = c.wait_event(lambda e: e["action"] == "probe-differs" and e["server"] == SILENT_IP, 60)
        check("active-probing: the silent server is found unlike nginx", e is not None, str(c.read_events()[-5:]))
        time.sleep(0.5)
        r = tcp_probe(SILENT_IP, 443, b"hello", wait=1)
        check("active-probing: then its address is blocked (connect times out)", r.get("connect") == "timeout", str(r))
        rc, out = curl(f"https://{NGINX_IP}/")
        check("active-probing: nginx passes", rc == 0 and "postern-lab-site" in out, f"rc={rc}")
        e = c.wait_event(lambda e: e["module"] == "probe" and e["server"] == NGINX_IP and
                         e["action"] in ("probe-same", "probe-differs"), 60)
        check("active-probing: nginx is probed and found alike", e is not None and e["action"] == "probe-same",
              str(e))
        rc, out = curl(f"https://{NGINX_IP}/")
        check("active-probing: nginx stays reachable", rc == 0 and "postern-lab-site" in out, f"rc={rc}")
    finally:
        c.close()


def case_ip_blocklist(tmp):
    c = Censor(tmp, "ip-blocklist", "--known-address", NGINX_IP)
    try:
        rc, _ = curl(f"https://{NGINX_IP}/")
        check("ip-blocklist: a listed address times out at connect", rc == 28, f"rc={rc}")
        r = tcp_probe(SILENT_IP, 443, b"hello", wait=0.5)
        check("ip-blocklist: another address is reachable", r.get("connect") == "ok", str(r))
        c.wait_event(lambda e: e["module"] == "flow" and e["server"] == SILENT_IP, 3)
        check("ip-blocklist: the middlebox never saw the listed address", not c.flows(NGINX_IP), str(c.flows(NGINX_IP)))
        check("ip-blocklist: it saw the other", len(c.flows(SILENT_IP)) == 1, str(c.read_events()))
    finally:
        c.close()


def case_port_allowlist(tmp):
    c = Censor(tmp, "port-allowlist")
    try:
        r = tcp_probe(SILENT_IP, 443, b"hello", wait=0.5)
        check("port-allowlist: port 443 passes", r.get("connect") == "ok", str(r))
        r = tcp_probe(SILENT_IP, 8443, b"hello", wait=0.5)
        check("port-allowlist: port 8443 times out at connect", r.get("connect") == "timeout", str(r))
        answers = dns_query("chat.example")
        check("port-allowlist: DNS on port 53 passes", answers and answers[0].get("addrs") == [NGINX_IP], str(answers))
        c.wait_event(lambda e: e["module"] == "flow" and e["server"] == SILENT_IP, 3)
        check("port-allowlist: only the 443 flow reached the middlebox",
              len(c.flows(SILENT_IP, 443)) == 1 and not c.flows(SILENT_IP, 8443), str(c.read_events()))
    finally:
        c.close()


def main():
    tmp = tempfile.mkdtemp(prefix="postern-censor-test-")
    DIRS.append(tmp)
    os.chmod(tmp, 0o755)  # nginx's worker may drop privileges
    try:
        make_topology()
        silent_log = start_servers(tmp)
        wanted = sys.argv[2:]  # optional: run only these cases
        cases = [("open", lambda: case_open(tmp)), ("sni-filter", lambda: case_sni(tmp)),
                 ("fet", lambda: case_fet(tmp, silent_log)), ("dns-injection", lambda: case_dns(tmp)),
                 ("active-probing", lambda: case_probing(tmp)), ("ip-blocklist", lambda: case_ip_blocklist(tmp)),
                 ("port-allowlist", lambda: case_port_allowlist(tmp))]
        for name, run in cases:
            if not wanted or name in wanted:
                run()
    finally:
        cleanup()


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables", "iptables-save", "nginx", "curl", "openssl"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed"
    return None


if __name__ == "__main__":
    if len(sys.argv) > 1:
        CENSOR = os.path.abspath(sys.argv[1])
    why = skip_reason()
    if why:
        print(f"SKIP censor_test: {why}")
        sys.exit(SKIP)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run_main(main)  # prints the totals, exits 1 on any failure
