#!/usr/bin/env bash
# The demo at 1500 and 2500 splat steps, back to back, after waiting for an idle machine (load < 1):
# wall time, SfM / splat / mesh numbers and the threads governor history. Run it with nothing
# else on the machine (here: heavy -x bash bench/demo_steps.sh). README "The demo" quotes it.
for i in $(seq 36); do awk '{exit !($1 < 1)}' /proc/loadavg && break; sleep 5; done
echo "start $(date -u +%T) $(uptime)"
for s in 1500 2500; do
  rm -rf /tmp/demo_$s
  /usr/bin/time -f "wall %e s" python -m recon demo -o /tmp/demo_$s -q --steps $s 2>&1 | grep -E "wall|PSNR|psnr|registered|Chamfer|seconds" | tail -6
  python -c "import json;r=json.load(open('/tmp/demo_$s/report.json'));print('$s', {k:r.get(k) for k in ('stage_seconds','total_seconds')}); s=r.get('splat') or r.get('train') or {}; print({k:s.get(k) for k in ('psnr_test','ssim_test','seconds','num_gaussians','threads')})"
  echo "after $s: $(uptime)"
done
