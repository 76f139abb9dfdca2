package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cairnfs/cairn/internal/testserver"
	"github.com/cairnfs/cairn/internal/testserver/faultproxy"
)

// chromiumPath returns the browser to drive: CAIRN_TEST_CHROMIUM, else
// chromium on PATH. Without one the test is skipped, or fails when
// CAIRN_REQUIRE_SERVERS is set (testserver's convention).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CAIRN_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CAIRN_REQUIRE_SERVERS") != "" {
		t.Fatal("chromium is not installed and CAIRN_REQUIRE_SERVERS is set")
	}
	t.Skip("chromium is not installed")
	return ""
}

// chartState is what window.cairnUI.charts holds for one chart.
type chartState struct {
	Points int                `json:"points"`
	Latest map[string]float64 `json:"latest"`
	Total  map[string]float64 `json:"total"`
}

type pageState struct {
	Source  string                `json:"source"`
	Updates int                   `json:"updates"`
	Error   string                `json:"error"`
	Charts  map[string]chartState `json:"charts"`
}

// TestPageShowsInjectedThrottles runs `cairn dev` on DynamoDB's API (moto)
// behind the fault proxy, throttles a share of its reads while queries
// run, and checks in headless Chromium that /ui draws the store's figures
// and that its throttles add up to exactly the throttles the proxy
// injected. With CAIRN_UI_SCREENSHOT=path it saves a screenshot there.
func TestPageShowsInjectedThrottles(t *testing.T) {
	browser := chromiumPath(t)
	start := time.Now()
	var phases []string
	phase := func(name string) { phases = append(phases, fmt.Sprintf("%s %.1fs", name, time.Since(start).Seconds())) }
	defer func() { t.Logf("phases: %s", strings.Join(phases, ", ")) }()
	bin := testserver.BuildCairn(t)
	phase("build")
	proxy := faultproxy.Start(t, testserver.Moto(t), 11)
	phase("moto")
	features := filepath.Join(testserver.ModuleRoot(t), "examples", "features.yaml")
	dev := testserver.StartRole(t, bin, "dev", []string{
		"--store", "dynamodb:///cairn-ui?region=us-east-1&endpoint=" + proxy.URL(),
		"--data-dir", t.TempDir(), "--features", features,
	}, []string{
		"CAIRN_UI_SAMPLE_INTERVAL=1s",
		// This process's figures throughout: the fleet's rollups, which
		// `cairn dev` also keeps, cover whole minutes and would replace
		// them once a minute of them is complete.
		"CAIRN_UI_SOURCE=process",
		// A throttle answer arriving after its request was given up (the
		// query's deadline, the probe's timeout) is never counted by
		// cairn: deadlines far from the retries' backoff keep that from
		// happening.
		"CAIRN_QUERY_TIMEOUT=10s", "CAIRN_HEALTH_PROBE_TIMEOUT=5s",
		// The namespace charts get figures: a cache on user, a Bloom
		// filter on merchant (whose keys, never uploaded, it answers
		// absent). No request racing: the loser of a race is cancelled
		// unanswered, so a throttle the proxy fires at it is never seen
		// by cairn, and the totals could not be compared exactly.
		`DYNAMODB_CACHED_NAMESPACES=[{"namespace": "user", "ttl_seconds": 60}]`,
		`CAIRN_BLOOM_NAMESPACES=[{"namespace": "merchant", "expected_keys": 10000, "false_positive_rate": 0.01}]`,
		"CAIRN_API_AUTH=none",
		"DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS=true",
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
	})

	phase("cairn dev")
	// Throttles start once the page has a point, so that every one of
	// them falls inside the points it shows.
	waitFor(t, 10*time.Second, "a first point at /ui/data", func() bool {
		resp, err := http.Get(dev.URL() + "/ui/data")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var d wireData
		return json.NewDecoder(resp.Body).Decode(&d) == nil && len(d.Points) > 0
	})
	phase("first point")
	rule, err := proxy.Add(faultproxy.Rule{Operations: []string{"GetItem", "BatchGetItem"}, Fault: faultproxy.Throttle, Probability: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	var queries, answered atomic.Int64
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// Each user is read twice: the second read is a cache hit.
				body := fmt.Sprintf(`{"inputs": {"user.id": "ui-%d-%d"}, "outputs": ["user.age"]}`, w, i/2)
				if i%4 == 3 {
					body = fmt.Sprintf(`{"inputs": {"merchant.id": %d}, "outputs": ["merchant.name"]}`, 1000*w+i)
				}
				resp, err := http.Post(dev.URL()+"/v1/query/online", "application/json", strings.NewReader(body))
				queries.Add(1)
				if err == nil {
					if resp.StatusCode == http.StatusOK {
						answered.Add(1)
					}
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	stop()
	proxy.Remove(rule)
	injected := proxy.Fired(rule)
	t.Logf("%d queries (%d answered 200); the proxy throttled %d of %d reads", queries.Load(), answered.Load(), injected,
		proxy.Count("GetItem").Requests+proxy.Count("BatchGetItem").Requests)
	if injected == 0 || answered.Load() == 0 {
		t.Fatalf("no throttle injected (%d) or no query answered (%d): the test proves nothing", injected, answered.Load())
	}

	phase("queries")
	bctx := openPage(t, browser, dev.URL()+"/ui?refresh=1")
	phase("browser")

	// The page polls every second; the throttle chart's total reaches the
	// injected count once the sample after the last throttle is drawn, and
	// the writer lag chart has figures once the writer joined its group.
	charts := []string{"store-requests", "store-errors", "store-throttles", "latency", "cache-hit", "bloom", "races", "writer-lag", "kafka-drops"}
	settled := func(st pageState) bool {
		if math.Abs(st.Charts["store-throttles"].Total["throttles"]-float64(injected)) >= 0.5 {
			return false
		}
		for _, id := range charts {
			if len(st.Charts[id].Latest) == 0 {
				return false
			}
		}
		return true
	}
	var st pageState
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		st, err = chromedp.Run(bctx, chromedp.Evaluate[pageState](`window.cairnUI`))
		if err != nil {
			t.Fatalf("read window.cairnUI: %v", err)
		}
		if settled(st) || time.Now().After(deadline) {
			break
		}
	}
	phase("settled")
	if got := st.Charts["store-throttles"].Total["throttles"]; math.Abs(got-float64(injected)) >= 0.5 {
		t.Errorf("the throttle chart totals %v throttles, the proxy injected %d; page: %+v", got, injected, st)
	}
	if st.Source != "this process" || st.Error != "" {
		t.Errorf("source %q, error %q: want this process's figures", st.Source, st.Error)
	}
	for _, id := range charts {
		if c := st.Charts[id]; c.Points == 0 || len(c.Latest) == 0 {
			t.Errorf("chart %s has no figures: %+v", id, c)
		}
	}
	// Two of every three user reads are of a user not read before: the
	// points the chart draws hold both misses and hits. Which point holds
	// which depends on where the samples fall, so the check is on all the
	// points, not on the latest.
	if _, ok := st.Charts["cache-hit"].Latest["user"]; !ok {
		t.Errorf("the cache hit chart draws no ratio for user")
	}
	lo, hi := cacheHitRange(t, dev.URL())
	if !(lo < 1 && hi > 0) {
		t.Errorf("cache hit ratios of user from %v to %v over the points, want some misses (< 1) and some hits (> 0)", lo, hi)
	}
	if r := st.Charts["bloom"].Latest["merchant"]; r != 1 {
		t.Errorf("Bloom short-circuit ratio of merchant %v, want 1: no merchant was ever stored", r)
	}
	// Each store call is counted once after its retries: at most one per
	// request the proxy saw.
	seen := 0
	for _, c := range proxy.Counts() {
		seen += c.Requests
	}
	if got := st.Charts["store-requests"].Total["requests"]; got <= 0 || got > float64(seen) {
		t.Errorf("the request chart totals %v store requests; the proxy saw %d", got, seen)
	}
	if _, ok := st.Charts["latency"].Latest["p99"]; !ok {
		t.Errorf("the latency chart has no p99: %+v", st.Charts["latency"])
	}
	if _, ok := st.Charts["writer-lag"].Latest["p0"]; !ok {
		t.Errorf("the writer lag chart has no partition 0: %+v", st.Charts["writer-lag"])
	}

	// The same figures are in the DOM, for anything reading the page.
	attr, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS("#chart-store-throttles"), "data-total"))
	if err != nil || !attr.Exists {
		t.Fatalf("data-total of the throttle chart: %v (present: %v)", err, attr.Exists)
	}
	var fromDOM map[string]float64
	if err := json.Unmarshal([]byte(attr.Value), &fromDOM); err != nil || math.Abs(fromDOM["throttles"]-float64(injected)) >= 0.5 {
		t.Errorf("data-total %q, want %d throttles (%v)", attr.Value, injected, err)
	}

	if path := os.Getenv("CAIRN_UI_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of /ui in %s", path)
	}
}

// openPage opens url in a headless browser of the test's own, and returns
// the context to run actions on it, which bounds each to 25 s.
func openPage(t *testing.T, browser, url string) context.Context {
	t.Helper()
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000))...)
	t.Cleanup(cancel)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first action starts the browser, which lives as long as the
	// context of that action: no timeout on it, only on the later ones.
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s in chromium: %v", url, err)
	}
	bctx, cancel = context.WithTimeout(bctx, 25*time.Second)
	t.Cleanup(cancel)
	return bctx
}

// TestPageAsksForAnAdminKey runs `cairn dev` with API keys and
// CAIRN_METRICS_REQUIRE_AUTH: the page loads without a key, asks for one,
// refuses a key without the admin scope, and shows the figures once given
// an admin key.
func TestPageAsksForAnAdminKey(t *testing.T) {
	browser := chromiumPath(t)
	bin := testserver.BuildCairn(t)
	const adminToken, queryToken = "cairn_ui-admin-token", "cairn_ui-query-token"
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	content := fmt.Sprintf("keys:\n  - {name: ops, sha256: %s, scopes: [admin]}\n  - {name: ranker, sha256: %s, scopes: [query]}\n",
		sha256Hex(adminToken), sha256Hex(queryToken))
	if err := os.WriteFile(keys, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	features := filepath.Join(testserver.ModuleRoot(t), "examples", "features.yaml")
	dev := testserver.StartRole(t, bin, "dev", []string{"--data-dir", dir, "--features", features},
		[]string{"CAIRN_UI_SAMPLE_INTERVAL=1s", "CAIRN_API_KEYS_FILE=" + keys, "CAIRN_METRICS_REQUIRE_AUTH=true"})

	bctx := openPage(t, browser, dev.URL()+"/ui?refresh=1")
	enterKey := func(token string) {
		t.Helper()
		if err := chromedp.Do(bctx,
			chromedp.WaitVisible(chromedp.CSS("#auth")),
			chromedp.SetValue(chromedp.CSS("#key"), token),
			chromedp.Click(chromedp.CSS("#auth button")),
		); err != nil {
			t.Fatalf("enter a key: %v", err)
		}
	}
	pageState := func() pageState {
		t.Helper()
		st, err := chromedp.Run(bctx, chromedp.Evaluate[pageState](`window.cairnUI`))
		if err != nil {
			t.Fatalf("read window.cairnUI: %v", err)
		}
		return st
	}

	waitFor(t, 10*time.Second, "request for a key", func() bool { return strings.Contains(pageState().Error, "API key is needed") })
	enterKey(queryToken)
	waitFor(t, 10*time.Second, "refusal of a key without the admin scope", func() bool {
		return strings.Contains(pageState().Error, "lacks the admin scope")
	})
	enterKey(adminToken)
	waitFor(t, 10*time.Second, "figures after the admin key", func() bool {
		st := pageState()
		return st.Error == "" && st.Source == "this process" && st.Charts["store-requests"].Points > 0
	})
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no %s after %v", what, timeout)
		}
	}
}

// cacheHitRange returns the least and the greatest cache hit ratio of
// namespace user over the points /ui/data answers.
func cacheHitRange(t *testing.T, base string) (lo, hi float64) {
	t.Helper()
	resp, err := http.Get(base + "/ui/data")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d wireData
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range d.Points {
		if r := p.Namespaces["user"].CacheHitRatio; r != nil {
			lo, hi = math.Min(lo, *r), math.Max(hi, *r)
		}
	}
	return lo, hi
}
