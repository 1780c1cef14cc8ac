-- wrk's latency distribution as 1,000 quantiles in microseconds, printed when the run is done,
-- so that bench/run.py can merge the runs of several wrk processes (one per node) into one
-- distribution: wrk's own percentiles of two runs cannot be combined. Only done() is defined, so
-- wrk still sends its fixed request without calling Lua on the way.
done = function(summary, latency, requests)
  for i = 1, 1000 do
    io.write(string.format("quantile %d %d\n", i, latency:percentile(i / 10)))
  end
end
