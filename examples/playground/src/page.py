"""The playground's page (served by the dispatcher at /) and the example it starts with."""

EXAMPLE = """from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        name = (event["payload"] or {}).get("name", "world")

        @step.do("greet")
        async def greet():
            return f"Hello, {name}!"

        @step.do("count letters", config={"retries": {"limit": 2, "delay": "1 second"}})
        async def count(greet, ctx):
            if ctx["attempt"] == 1:
                raise RuntimeError("the first attempt fails; the retry succeeds")
            return len(greet)

        await greet()
        await step.sleep("think about it", "2 seconds")
        letters = await count()

        # Send an event of type "go" from the box below (or skip: it times out after 30 s)
        try:
            go = await step.wait_for_event("wait for go", "go", timeout="30 seconds")
            extra = go["payload"]
        except Exception:
            extra = "nobody said go"
        return {"letters": letters, "extra": extra}
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Workflow playground</title>
<style>
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f7f8fb; }
  header { padding: 10px 18px; background: #fff; border-bottom: 1px solid #e3e6ee; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; padding: 12px; }
  section { background: #fff; border: 1px solid #e3e6ee; border-radius: 6px; padding: 10px; }
  textarea { width: 100%; font: 12px/1.4 ui-monospace, monospace; box-sizing: border-box; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 4px 6px; border-bottom: 1px solid #e3e6ee;
           vertical-align: top; }
  pre { white-space: pre-wrap; word-break: break-all; margin: 0; font-size: 12px; }
  .done, .complete { color: #137333; } .failed, .errored { color: #b00020; }
  .sleeping, .waiting, .retrying { color: #a15c00; }
  #msg { color: #b00020; }
</style>
</head>
<body>
<header><b>Workflow playground</b> · paste a workflow (a <code>TenantWorkflow</code> class),
run it, and watch its steps. It runs in the sandbox, durably: restart the server and it
carries on.</header>
<main>
  <section>
    <textarea id="source" rows="32" spellcheck="false">{{EXAMPLE}}</textarea>
    <p>params (JSON) <input id="params" value='{"name": "Ada"}' size="30">
       <button id="run">Run</button> <span id="msg"></span></p>
  </section>
  <section>
    <div><b>Instance</b> <code id="iid">-</code> <b id="status"></b></div>
    <p>event type <input id="evtype" value="go" size="8">
       payload <input id="evpayload" value='"go go go"' size="14">
       <button id="send">Send event</button></p>
    <table id="steps"></table>
    <h4>output / error</h4><pre id="out"></pre>
  </section>
</main>
<script>
const API = "/cdn-cgi/local/explorer/api/workflows/playground/instances/";
let id = null;
const $ = (x) => document.getElementById(x);
const esc = (v) => String(v ?? "").replace(/[&<>]/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[c]));
$("run").onclick = async () => {
  $("msg").textContent = "";
  let params;
  try { params = JSON.parse($("params").value || "null"); }
  catch (e) { $("msg").textContent = "params: " + e.message; return; }
  const r = await fetch("/api/run", {method: "POST",
    body: JSON.stringify({source: $("source").value, params})});
  const body = await r.json();
  if (!r.ok) { $("msg").textContent = body.error; return; }
  id = body.id; $("iid").textContent = id; poll();
};
$("send").onclick = async () => {
  if (!id) return;
  await fetch(API + encodeURIComponent(id) + "/events/" + encodeURIComponent($("evtype").value),
              {method: "POST", body: $("evpayload").value || "null"});
  poll();
};
async function poll() {
  if (!id) return;
  const r = await fetch(API + encodeURIComponent(id));
  const body = await r.json();
  if (!body.success) { $("msg").textContent = body.errors[0].message; return; }
  const d = body.result;
  $("status").textContent = d.status; $("status").className = d.status;
  $("steps").innerHTML = "<tr><th>step</th><th>state</th><th>result</th></tr>" +
    d.steps.map((s) => `<tr><td>${esc(s.name)}</td><td class="${s.state}">${s.state}
      ${s.attempt > 1 ? "(attempt " + s.attempt + ")" : ""}</td>
      <td><pre>${esc(s.error ? s.error.name + ": " + s.error.message
        : s.output !== null ? JSON.stringify(s.output) : s.wake_at ? "until " + s.wake_at : "")}
      </pre></td></tr>`).join("");
  $("out").textContent = JSON.stringify(d.error || d.output, null, 2);
}
setInterval(poll, 700);
</script>
</body>
</html>
"""
