-- Argo CD health check for homeostat.dev/RemediationPolicy.
-- Suspended when spec.guards.suspend; Progressing until the operator has seen this generation or
-- while an incident is open (Reconciling); Degraded when Stalled (a spec error, or no usable data
-- for longer than 5 intervals) or not Ready; Healthy when Ready, the message naming a transient
-- data problem (DataAvailable=False) when there is one.
local hs = {}
if obj.spec ~= nil and obj.spec.guards ~= nil and obj.spec.guards.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.guards.suspend is set: evaluating only, no incident is opened"
  return hs
end
local s = obj.status
if s == nil or s.observedGeneration == nil or
    (obj.metadata.generation ~= nil and s.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to evaluate this generation"
  return hs
end
local function cond(t)
  if s.conditions == nil then return nil end
  for _, c in ipairs(s.conditions) do
    if c.type == t then return c end
  end
  return nil
end
local stalled, reconciling, ready = cond("Stalled"), cond("Reconciling"), cond("Ready")
local data = cond("DataAvailable")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.reason .. ": " .. (reconciling.message or "")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  if data ~= nil and data.status == "False" then
    hs.message = "DataAvailable=False " .. data.reason .. ": " .. (data.message or "")
  end
elseif ready ~= nil then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
else
  hs.status = "Progressing"
  hs.message = "No Ready condition yet"
end
return hs
