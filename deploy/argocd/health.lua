-- Argo CD health check for flinkop.io/FlinkJob (resource.customizations.health.flinkop.io_FlinkJob).
-- Follows the operator's kstatus conditions: Ready, Reconciling, Stalled. Plain Lua 5.1 (gopher-lua).
local hs = {}

local function condition(status, kind)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function text(value, fallback)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
local observed = type(status) == "table" and status.observedGeneration or nil

if type(status) ~= "table" or observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = string.format("Waiting for the operator to observe generation %d", generation)
  else
    hs.message = "Waiting for the operator to observe the resource"
  end
  return hs
end

local phase = status.phase
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")
local reconciling = condition(status, "Reconciling")

if isTrue(stalled) then
  -- Covers a rollback after a failed restore: phase Running, but Stalled with reason RestoreFailed.
  hs.status = "Degraded"
  hs.message = text(stalled.message, text(status.message, text(stalled.reason, "Stalled")))
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text(status.message, "The job failed")
  return hs
end

if phase == "Suspended" and isTrue(ready) then
  hs.status = "Suspended"
  hs.message = text(status.message, "The job is suspended")
  return hs
end

if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = text(status.message, "The job is running")
  return hs
end

hs.status = "Progressing"
if isTrue(reconciling) or phase == "Pending" or phase == "Deploying" or phase == "Upgrading"
    or phase == "RollingBack" then
  hs.message = text(status.message, text(reconciling and reconciling.message, phase or "Reconciling"))
else
  hs.message = text(status.message, "Waiting for the job to become ready")
end
return hs
