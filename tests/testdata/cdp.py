#!/usr/bin/env python3
"""Drives a real headless Chromium through the DevTools protocol (over
--remote-debugging-pipe, so no port and no websocket library) for the web
console's end-to-end tests.

Reads a JSON list of actions on stdin, runs them in one tab, and prints one
JSON object: {"results": [...], "errors": [...]} where errors are uncaught
exceptions, console.error calls and browser log errors (CSP violations, failed
loads) seen while the actions ran. Actions:

  {"open": URL}                      navigate; wait until that URL has loaded
  {"wait": JS, "timeout": seconds}   poll until the expression is truthy; result is its value
  {"eval": JS}                       result is the expression's value
  {"click": CSS}                     click the first element matching CSS
  {"fill": CSS, "value": TEXT}       set an input's value
  {"sleep": seconds}
  {"screenshot": PATH}               save the viewport as a PNG

A failed action stops the script; the output says which one and why.
Confirm dialogs are accepted.
"""
import json
import os
import subprocess
import sys
import time

BROWSER = os.environ.get("SLUICE_CHROMIUM", "chromium-headless-shell")


class Browser:
    def __init__(self):
        to_browser = os.pipe()
        from_browser = os.pipe()
        # The browser reads commands on fd 3 and writes answers on fd 4.
        high_r = os.dup(to_browser[0])
        high_w = os.dup(from_browser[1])

        def child():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", "--no-first-run", "--user-data-dir=" + os.environ["CDP_PROFILE"],
             "about:blank"],
            preexec_fn=child, pass_fds=(3, 4, high_r, high_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_browser[0], from_browser[1], high_r, high_w):
            os.close(fd)
        self.w = to_browser[1]
        self.r = from_browser[0]
        self.buf = b""
        self.next_id = 0
        self.session = None
        self.errors = []

    def send(self, method, params=None, session=True, timeout=15):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self.read(deadline)
            if m is None:
                raise RuntimeError(f"{method}: no answer within {timeout}s")
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def read(self, deadline):
        import select
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.r], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        m = json.loads(raw)
        self.event(m)
        return m

    def event(self, m):
        method = m.get("method")
        p = m.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            # Answered outside send(): the page blocks until it is.
            self.next_id += 1
            os.write(self.w, json.dumps({"id": self.next_id, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": True}, "sessionId": self.session}).encode() + b"\0")

    def open_tab(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        # A laptop-sized window, for the pages' layout and for screenshots.
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails'].get('exception', {}).get('description') or r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def close(self):
        try:
            self.proc.kill()
            self.proc.wait(5)
        except Exception:
            pass


def run(actions):
    b = Browser()
    results = []
    try:
        b.open_tab()
        for i, a in enumerate(actions):
            if "open" in a:
                b.send("Page.navigate", {"url": a["open"]})
                # Until the page (or, for a new fragment, the same page) is there.
                want = json.dumps(a["open"])
                deadline = time.time() + 20
                while time.time() < deadline:
                    try:
                        if b.eval(f"document.readyState === 'complete' && location.href === {want}"):
                            break
                    except RuntimeError:
                        pass
                    time.sleep(0.05)
                else:
                    raise RuntimeError(f"action {i}: {a['open']} did not load within 20s")
                results.append(None)
            elif "wait" in a:
                deadline = time.time() + a.get("timeout", 20)
                value = None
                while time.time() < deadline:
                    try:
                        # An element comes back by value as {} (falsy here): count it as true.
                        value = b.eval(f"(() => {{ const v = ({a['wait']}); return v instanceof Node ? true : v; }})()")
                    except RuntimeError:
                        value = None
                    if value:
                        break
                    time.sleep(0.2)
                if not value:
                    page = b.eval("document.getElementById('view') ? document.getElementById('view').innerText : document.documentElement.outerHTML")
                    raise RuntimeError(f"action {i}: `{a['wait']}` not true within {a.get('timeout', 20)}s; the page shows:\n{page}")
                results.append(value)
            elif "screenshot" in a:
                import base64
                shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
                with open(a["screenshot"], "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                results.append(a["screenshot"])
            elif "eval" in a:
                results.append(b.eval(a["eval"]))
            elif "click" in a:
                sel = json.dumps(a["click"])
                ok = b.eval(f"(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()")
                if not ok:
                    raise RuntimeError(f"action {i}: nothing matches {a['click']}")
                results.append(True)
            elif "fill" in a:
                sel, val = json.dumps(a["fill"]), json.dumps(a["value"])
                ok = b.eval(f"(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.value = {val}; e.dispatchEvent(new Event('input')); return true; }})()")
                if not ok:
                    raise RuntimeError(f"action {i}: nothing matches {a['fill']}")
                results.append(True)
            elif "sleep" in a:
                time.sleep(a["sleep"])
                results.append(None)
            else:
                raise RuntimeError(f"action {i}: unknown {a}")
        # Let late events (errors from the last render) arrive.
        b.read(time.time() + 0.3)
        return {"results": results, "errors": b.errors}
    except Exception as e:
        return {"results": results, "errors": b.errors, "failed": str(e)}
    finally:
        b.close()


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin))))
