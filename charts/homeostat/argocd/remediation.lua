-- Argo CD health check for homeostat.dev/Remediation (one incident).
-- Reads the kstatus conditions when the operator writes them, else the phase:
-- Detected/Acting/Verifying -> Progressing, Succeeded/DryRun -> Healthy, Failed/Escalated -> Degraded,
-- Halted (stopped by the kill switch) -> Suspended.
local hs = {}
local s = obj.status
if s == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to record the incident"
  return hs
end
local function cond(t)
  if s.conditions == nil then return nil end
  for _, c in ipairs(s.conditions) do
    if c.type == t then return c end
  end
  return nil
end
if s.phase == "Halted" then
  hs.status = "Suspended"
  hs.message = "Halted: " .. (s.message or "stopped by suspend or dryRun")
  return hs
end
local stalled, reconciling, ready = cond("Stalled"), cond("Reconciling"), cond("Ready")
local msg = s.message or ""
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or msg)
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.reason .. ": " .. (reconciling.message or msg)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.reason .. ": " .. (ready.message or msg)
  return hs
end
local phase = s.phase or "Detected"
if phase == "Succeeded" or phase == "DryRun" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Escalated" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = phase .. ": " .. msg
return hs
