-- Runs both health checks on sample objects: lua5.4 charts/homeostat/argocd/test.lua
-- (Argo CD runs them with gopher-lua, Lua 5.1; nothing here needs more.)
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local function run(script, o)
  obj = o
  local f = assert(loadfile(dir .. "/" .. script))
  return f()
end
local function c(t, status, reason, message)
  return { type = t, status = status, reason = reason, message = message }
end
-- With arguments, runs one check on one live object instead (the e2e suite):
--   lua5.4 test.lua remediation.lua OBJECT.lua   (OBJECT.lua: `return { ... }`, the object)
-- and prints "<health status>\t<message>".
if arg[1] ~= nil then
  local o = assert(loadfile(arg[2]))()
  local hs = run(arg[1], o)
  print(hs.status .. "\t" .. (hs.message or ""))
  return
end
local failed = 0
local function check(script, name, o, want)
  local hs = run(script, o)
  local ok = hs.status == want
  if not ok then failed = failed + 1 end
  print(string.format("  %s %-22s %-40s %-12s %s", ok and "ok " or "BAD", script:gsub("%.lua$", ""), name, hs.status, hs.message or ""))
end
local R = "remediation.lua"
check(R, "no status yet", {}, "Progressing")
check(R, "phase Acting (no conditions)", { status = { phase = "Acting", message = "evicting web-1" } }, "Progressing")
check(R, "phase Succeeded (no conditions)", { status = { phase = "Succeeded" } }, "Healthy")
check(R, "phase Escalated (no conditions)", { status = { phase = "Escalated" } }, "Degraded")
check(R, "phase Failed (no conditions)", { status = { phase = "Failed" } }, "Degraded")
check(R, "phase DryRun (no conditions)", { status = { phase = "DryRun" } }, "Healthy")
check(R, "phase Halted (kill switch)", { status = { phase = "Halted", conditions = {
  c("Ready", "True", "Halted", "suspend set while open") } } }, "Suspended")
check(R, "Reconciling=True", { status = { phase = "Verifying", conditions = {
  c("Ready", "False", "Progressing", "waiting"), c("Reconciling", "True", "Verifying", "clear for 30s of 2m"),
  c("Stalled", "False", "Verifying", "") } } }, "Progressing")
check(R, "Stalled=True", { status = { phase = "Escalated", conditions = {
  c("Ready", "False", "Escalated", "x"), c("Reconciling", "False", "Escalated", ""),
  c("Stalled", "True", "Escalated", "fault persists after 2 attempts") } } }, "Degraded")
check(R, "Ready=True", { status = { phase = "Succeeded", conditions = {
  c("Ready", "True", "Succeeded", "clear for 2m"), c("Reconciling", "False", "Succeeded", ""),
  c("Stalled", "False", "Succeeded", "") } } }, "Healthy")
local P = "remediationpolicy.lua"
local meta = { generation = 2 }
check(P, "no status yet", { metadata = meta }, "Progressing")
check(P, "old generation", { metadata = meta, status = { observedGeneration = 1,
  conditions = { c("Ready", "True", "Evaluating", "ok") } } }, "Progressing")
check(P, "suspended", { metadata = meta, spec = { guards = { suspend = true } } }, "Suspended")
check(P, "Ready=True", { metadata = meta, status = { observedGeneration = 2,
  conditions = { c("Ready", "True", "Evaluating", "3 faults healthy") } } }, "Healthy")
check(P, "incident open", { metadata = meta, status = { observedGeneration = 2,
  conditions = { c("Ready", "True", "Evaluating", "ok"), c("Reconciling", "True", "IncidentOpen", "web-x7k2p Acting") } } }, "Progressing")
check(P, "spec error (Stalled)", { metadata = meta, status = { observedGeneration = 2,
  conditions = { c("Ready", "False", "PrometheusURLNotAllowed", "not allowed"), c("Stalled", "True", "PrometheusURLNotAllowed", "not allowed") } } }, "Degraded")
check(P, "no data yet (DataAvailable=False)", { metadata = meta, status = { observedGeneration = 2,
  conditions = { c("Ready", "True", "Evaluating", "evaluating; no series"), c("DataAvailable", "False", "NoData", "no series"),
  c("Stalled", "False", "Evaluating", "") } } }, "Healthy")
check(P, "no data for long (Stalled)", { metadata = meta, status = { observedGeneration = 2,
  conditions = { c("Ready", "False", "NoData", "no series for 300s"), c("DataAvailable", "False", "NoData", "no series"),
  c("Stalled", "True", "NoData", "no series for 300s") } } }, "Degraded")
check(P, "Prometheus down (Ready=False)", { metadata = meta, status = { observedGeneration = 2,
  conditions = { c("Ready", "False", "PrometheusUnreachable", "connection refused") } } }, "Degraded")
if failed > 0 then
  print(failed .. " check(s) failed")
  os.exit(1)
end
print("all health checks behave")
