// Channel history in Redis, for all nodes: the scripts that number a channel part and keep it, and read what a
// resuming stream missed, and the keys they use.

const ID_KEY = 'muxgate:channel-id';
/** With an age limit: `<ms>-<seq>` entries holding the id of the last part numbered before that time (see below). */
const CHECKPOINTS_KEY = 'muxgate:channel-checkpoints';

function historyKey(channel: string): string {
  return `muxgate:history:${channel}`;
}

/** The id of the last part a channel's history forgot (trimmed, or perhaps gone with age before the history began). */
function forgottenKey(channel: string): string {
  return `muxgate:forgotten:${channel}`;
}

// For both scripts: `now`, Redis's time in ms, and ageFloor(), the highest id that may have gone with age. Every
// part numbered after the first checkpoint younger than the age limit belongs to a history written to since then,
// which still exists; without such a checkpoint, none is known to remain.
const AGE_FLOOR = `
local function ageFloor(checkpoints, now, maxAge, current)
  local first = redis.call('XRANGE', checkpoints, tostring(now - maxAge + 1), '+', 'COUNT', 1)
  if #first == 0 then return current end
  return tonumber(first[1][2][2])
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

// Numbers a channel part with one id for all nodes, keeps it in each channel's history stream (the last ARGV[1]
// parts; the id of the last one trimmed is remembered), and publishes `<id>\n<frame>` on each channel's subject.
// With an age limit (ARGV[2] ms), a channel's history and what it remembers expire that long after its last part,
// and a checkpoint (at most 60 per age limit) records which ids were numbered by when. One script, so that ids are
// published in increasing order.
// KEYS: id counter, checkpoints, then a history stream and its forgotten id per channel; ARGV: parts kept, age
// limit, frame, channel subjects.
export const SEQUENCE_SCRIPT = AGE_FLOOR + `
local id = redis.call('INCR', KEYS[1])
local keep = tonumber(ARGV[1])
local maxAge = tonumber(ARGV[2])
if keep > 0 then
  if maxAge > 0 then
    local step = math.max(1, math.floor(maxAge / 60))
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    if #last == 0 or now - tonumber(string.match(last[1][1], '^(%d+)')) >= step then
      redis.call('XADD', KEYS[2], 'MINID', tostring(now - maxAge - 2 * step), '*', 'id', id - 1)
      redis.call('PEXPIRE', KEYS[2], maxAge + 2 * step)
    end
  end
  for i = 3, #KEYS, 2 do
    local length = redis.call('XLEN', KEYS[i])
    if length == 0 and maxAge > 0 then
      -- A new history: the parts this channel had may have gone with age.
      redis.call('SET', KEYS[i + 1], ageFloor(KEYS[2], now, maxAge, id - 1))
    elseif length >= keep then
      local oldest = redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', 1)
      redis.call('SET', KEYS[i + 1], string.match(oldest[1][1], '%-(%d+)$'))
      redis.call('XTRIM', KEYS[i], 'MAXLEN', keep - 1)
    end
    redis.call('XADD', KEYS[i], '0-' .. id, 'm', ARGV[3])
    if maxAge > 0 then
      redis.call('PEXPIRE', KEYS[i], maxAge)
      redis.call('PEXPIRE', KEYS[i + 1], maxAge)
    end
  end
end
for i = 4, #ARGV do redis.call('PUBLISH', ARGV[i], id .. '\\n' .. ARGV[3]) end
return id
`;

// What a resuming stream needs, read at once: the current id, then per channel the id below which its history no
// longer reaches and its parts numbered above ARGV[2]. KEYS: id counter, checkpoints, then a history stream and its
// forgotten id per channel; ARGV: age limit, since.
export const REPLAY_SCRIPT = AGE_FLOOR + `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local maxAge = tonumber(ARGV[1])
local result = { current }
for i = 3, #KEYS, 2 do
  local floor = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if maxAge > 0 and redis.call('EXISTS', KEYS[i]) == 0 then floor = ageFloor(KEYS[2], now, maxAge, current) end
  result[#result + 1] = floor
  result[#result + 1] = redis.call('XRANGE', KEYS[i], '(0-' .. ARGV[2], '+')
end
return result
`;

/** An entry of a history stream: its id (`0-<channel id>`) and its one field, `m`, the part's frame. */
export type HistoryEntry = [id: Buffer, fields: [Buffer, Buffer]];

export function channelKeys(channels: readonly string[]): string[] {
  const keys = [ID_KEY, CHECKPOINTS_KEY];
  for (const channel of channels) keys.push(historyKey(channel), forgottenKey(channel));
  return keys;
}
