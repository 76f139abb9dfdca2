package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnfs/cairn/internal/api"
	"github.com/cairnfs/cairn/internal/config"
	"github.com/cairnfs/cairn/internal/queue"
)

// runFailover is `cairn failover kafka`: it asks every target process
// (query servers and writers, by their HTTP address) to switch its Kafka
// clients to --to, concurrently, and prints one line per target with the
// cluster it answered active, or its error. Without --to it only reads the
// active cluster of each. It exits non-zero when any target failed.
func runFailover(ctx context.Context, args []string, env *config.Env, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "kafka" {
		return errors.New("usage: cairn failover kafka --to primary|secondary --targets HOST:PORT,... | --targets-file FILE")
	}
	fs := newFlagSet("failover kafka", stderr)
	to := fs.String("to", "", "cluster to make active: primary or secondary; empty only reads each target's active cluster")
	targets := fs.String("targets", "", "comma-separated HTTP addresses (HOST:PORT, or a URL with https://) of the processes to switch: every query server and writer")
	targetsFile := fs.String("targets-file", "", "file of targets, one per line (# starts a comment); instead of --targets")
	tokenFile := fs.String("token-file", "", "file holding an API token with the admin scope; instead of CAIRN_ADMIN_TOKEN")
	timeout := fs.Duration("timeout", 30*time.Second, "how long each target may take to answer (a switch waits for the writer's batch in hand)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := env.Err(); err != nil {
		return err
	}
	if *to != "" && *to != queue.Primary && *to != queue.Secondary {
		return fmt.Errorf("--to %q: want primary or secondary", *to)
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", *timeout)
	}
	list, err := failoverTargets(*targets, *targetsFile)
	if err != nil {
		return err
	}
	token := env.String("CAIRN_ADMIN_TOKEN")
	if *tokenFile != "" {
		if token != "" {
			return errors.New("CAIRN_ADMIN_TOKEN and --token-file are both set: choose one")
		}
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("--token-file %s is empty", *tokenFile)
		}
	}

	answers := make([]string, len(list))
	failed := make([]bool, len(list))
	var wg sync.WaitGroup
	for i, target := range list {
		wg.Go(func() {
			tctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			ka, err := askKafkaActive(tctx, target, *to, token)
			if err != nil {
				answers[i], failed[i] = fmt.Sprintf("%s: error: %v", target, err), true
				return
			}
			answers[i] = fmt.Sprintf("%s: %s active%s", target, ka.Cluster, describeClients(ka.Clients))
			if *to != "" && ka.Cluster != *to {
				failed[i] = true
			}
		})
	}
	wg.Wait()
	n := 0
	for i, a := range answers {
		fmt.Fprintln(stdout, a)
		if failed[i] {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%d of %d targets failed", n, len(list))
	}
	return nil
}

// failoverTargets returns the targets of --targets or --targets-file.
func failoverTargets(targets, file string) ([]string, error) {
	var list []string
	switch {
	case targets != "" && file != "":
		return nil, errors.New("--targets and --targets-file are both set: choose one")
	case targets != "":
		for _, t := range strings.Split(targets, ",") {
			if t = strings.TrimSpace(t); t != "" {
				list = append(list, t)
			}
		}
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--targets-file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			if line = strings.TrimSpace(line); line != "" {
				list = append(list, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--targets-file %s: %w", file, err)
		}
	}
	if len(list) == 0 {
		return nil, errors.New("no targets: give --targets HOST:PORT,... or --targets-file FILE")
	}
	return list, nil
}

// askKafkaActive asks target to switch to cluster (GET its active cluster
// when cluster is empty) and returns its answer.
func askKafkaActive(ctx context.Context, target, cluster, token string) (*api.KafkaActive, error) {
	url := target
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + api.KafkaActivePath
	method, body := http.MethodGet, []byte(nil)
	if cluster != "" {
		method = http.MethodPost
		body, _ = json.Marshal(map[string]string{"cluster": cluster})
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Errors []api.ChalkError `json:"errors"`
		}
		if json.Unmarshal(b, &e) == nil && len(e.Errors) > 0 {
			msgs := make([]string, len(e.Errors))
			for i, ce := range e.Errors {
				msgs[i] = ce.Code + ": " + ce.Message
			}
			return nil, fmt.Errorf("%s: %s", resp.Status, strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var ka api.KafkaActive
	if err := json.Unmarshal(b, &ka); err != nil {
		return nil, fmt.Errorf("answer %q: %w", b, err)
	}
	return &ka, nil
}

// describeClients renders the clients' clusters as " (producer=secondary,
// writer=secondary)".
func describeClients(clients map[string]string) string {
	if len(clients) == 0 {
		return ""
	}
	names := make([]string, 0, len(clients))
	for n := range clients {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + clients[n]
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
