-- wrk script: send DEPTH requests for PATH back to back on each connection
-- (wrk -s pipeline.lua URL -- DEPTH PATH); wrk counts every response.
init = function(args)
    local depth = tonumber(args[1]) or 16
    local path = args[2] or "/small.txt"
    local r = {}
    for i = 1, depth do
        r[i] = wrk.format(nil, path)
    end
    req = table.concat(r)
end

request = function()
    return req
end
