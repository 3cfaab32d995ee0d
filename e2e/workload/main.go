// Command workload is the process inside the e2e real-node pods: a small static binary whose
// behaviour comes from its environment, and can be changed while it runs.
//
// Settings (environment variables, each optionally overridden while running by KEY=VALUE lines in
// $CONTROL_DIR/default.env and then $CONTROL_DIR/$POD_NAME.env, re-read every second):
//
//	MODE        idle | spin | leak | crash | shared (default idle)
//	THREADS     spin: goroutines that burn CPU (default 1)
//	SPIN_FOR    spin: stop spinning (go idle) this long after the mode was set (default: never)
//	LEAK_RATE   leak: bytes per second to allocate and touch, e.g. 2Mi (default 1Mi)
//	CRASH_AFTER crash: exit with status 1 this long after start (default 10s)
//	TOTAL       shared: total CPU in millicores spread over the live replicas (default 500)
//
// idle: wakes every 0.5-1.5 s (jitter) for a few microseconds of work.
// shared: every replica writes a heartbeat file $CONTROL_DIR/replicas/$POD_NAME each second and
// counts the heartbeats younger than 3 s; it then burns TOTAL/live millicores (a duty cycle over
// 10 ms slices), so adding replicas lowers each one's load as real shared traffic would.
// On SIGTERM it removes its heartbeat and exits 0.
package main

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// settings is one reading of the environment plus the control files.
type settings struct {
	mode       string
	threads    int
	spinFor    time.Duration
	leakRate   int64
	crashAfter time.Duration
	total      int64
}

func main() {
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		pod, _ = os.Hostname()
	}
	control := os.Getenv("CONTROL_DIR")
	start := time.Now()

	cur, err := load(control, pod)
	if err != nil {
		fmt.Fprintf(os.Stderr, "workload %s: bad settings: %v\n", pod, err)
		os.Exit(2)
	}
	fmt.Printf("workload %s: start %+v\n", pod, cur)

	var demand atomic.Int64 // millicores the burners should use now
	startBurners(&demand)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	heartbeat := ""
	if control != "" {
		heartbeat = filepath.Join(control, "replicas", pod)
	}

	var leaked [][]byte
	modeSince := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		next, err := load(control, pod)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload %s: ignoring bad control file: %v\n", pod, err)
			next = cur
		}
		if next != cur {
			fmt.Printf("workload %s: settings %+v -> %+v\n", pod, cur, next)
			if next.mode != cur.mode {
				modeSince = time.Now()
			}
			cur = next
		}
		switch cur.mode {
		case "spin":
			if cur.spinFor > 0 && time.Since(modeSince) > cur.spinFor {
				demand.Store(0)
			} else {
				demand.Store(int64(cur.threads) * 1000)
			}
		case "shared":
			live := 1
			if heartbeat != "" {
				live = beat(heartbeat)
			}
			demand.Store(cur.total / int64(live))
		case "leak":
			demand.Store(0)
			chunk := make([]byte, cur.leakRate)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1 // touch every page: it counts in the working set
			}
			leaked = append(leaked, chunk)
		case "crash":
			demand.Store(0)
			if time.Since(start) > cur.crashAfter {
				fmt.Printf("workload %s: crashing after %s as told\n", pod, cur.crashAfter)
				os.Exit(1)
			}
		default:
			demand.Store(0)
		}
		select {
		case <-sigs:
			if heartbeat != "" {
				_ = os.Remove(heartbeat)
			}
			fmt.Printf("workload %s: terminated (%d MiB leaked)\n", pod, len(leaked)*int(cur.leakRate)>>20)
			os.Exit(0)
		case <-tick.C:
		}
	}
}

// beat refreshes this replica's heartbeat file and returns how many replicas beat within 3 s.
func beat(path string) int {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		fmt.Fprintf(os.Stderr, "workload: heartbeat dir %s: %v\n", dir, err)
		return 1
	}
	if err := os.WriteFile(path, []byte(time.Now().Format(time.RFC3339Nano)), 0o666); err != nil {
		fmt.Fprintf(os.Stderr, "workload: heartbeat %s: %v\n", path, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 1
	}
	live := 0
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && time.Since(info.ModTime()) < 3*time.Second {
			live++
		}
	}
	return max(live, 1)
}

// startBurners runs one goroutine per CPU; together they use `demand` millicores by spinning
// part of every 10 ms slice and sleeping the rest.
func startBurners(demand *atomic.Int64) {
	n := runtime.NumCPU()
	for w := 0; w < n; w++ {
		go func(w int) {
			const slice = 10 * time.Millisecond
			for {
				share := float64(demand.Load())/1000 - float64(w) // this burner's part, in cores
				if share <= 0 {
					// idle, with jitter
					time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
					continue
				}
				busy := time.Duration(math.Min(share, 1) * float64(slice))
				until := time.Now().Add(busy)
				for time.Now().Before(until) {
				}
				if rest := slice - busy; rest > 0 {
					time.Sleep(rest)
				}
			}
		}(w)
	}
}

// load reads the environment, then the control files over it.
func load(control, pod string) (settings, error) {
	kv := map[string]string{}
	for _, k := range []string{"MODE", "THREADS", "SPIN_FOR", "LEAK_RATE", "CRASH_AFTER", "TOTAL"} {
		if v, ok := os.LookupEnv(k); ok {
			kv[k] = v
		}
	}
	if control != "" {
		for _, f := range []string{"default.env", pod + ".env"} {
			if err := readEnvFile(filepath.Join(control, f), kv); err != nil {
				return settings{}, err
			}
		}
	}
	s := settings{mode: "idle", threads: 1, leakRate: 1 << 20, crashAfter: 10 * time.Second, total: 500}
	var err error
	if v := kv["MODE"]; v != "" {
		switch v {
		case "idle", "spin", "leak", "crash", "shared":
			s.mode = v
		default:
			return s, fmt.Errorf("MODE=%q: want idle, spin, leak, crash or shared", v)
		}
	}
	if v := kv["THREADS"]; v != "" {
		if s.threads, err = strconv.Atoi(v); err != nil || s.threads < 1 {
			return s, fmt.Errorf("THREADS=%q: want a positive integer", v)
		}
	}
	for key, dst := range map[string]*time.Duration{"SPIN_FOR": &s.spinFor, "CRASH_AFTER": &s.crashAfter} {
		if v := kv[key]; v != "" {
			if *dst, err = time.ParseDuration(v); err != nil {
				return s, fmt.Errorf("%s=%q: %v", key, v, err)
			}
		}
	}
	if v := kv["LEAK_RATE"]; v != "" {
		if s.leakRate, err = quantity(v); err != nil || s.leakRate < 4096 {
			return s, fmt.Errorf("LEAK_RATE=%q: want bytes per second >= 4Ki, e.g. 2Mi", v)
		}
	}
	if v := kv["TOTAL"]; v != "" {
		if s.total, err = strconv.ParseInt(v, 10, 64); err != nil || s.total < 0 {
			return s, fmt.Errorf("TOTAL=%q: want millicores >= 0", v)
		}
	}
	return s, nil
}

// readEnvFile merges KEY=VALUE lines of path into kv; a missing file is no error.
func readEnvFile(path string, kv map[string]string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s: line %q is not KEY=VALUE", path, line)
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return sc.Err()
}

// quantity parses 1048576, 512Ki, 2Mi or 1Gi.
func quantity(v string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if strings.HasSuffix(v, suffix) {
			v, mult = strings.TrimSuffix(v, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n * mult, err
}
