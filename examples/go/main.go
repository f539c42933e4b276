// Command rs-example-consumer-go: a durable consumer of one tenant's run
// events (docs/quickstart.md), for teams writing Go. It binds to the durable
// consumer `runctl consumers grant` created for the team (stream RUNS, filter
// runs.<tenant>.>), fetches in batches, prints one line per event,
//
//	<runseq> <type> <run_id>
//
// and acks after printing (at-least-once: an event printed but not acked
// before a crash comes again). It de-duplicates by CloudEvent id within its
// own lifetime; a real consumer would keep that key in its own store.
//
// Usage: rs-example-consumer-go NATS_URL TENANT CONSUMER [MAX_EVENTS]
// with RS_NATS_USER / RS_NATS_PASSWORD from the grant. It stops after
// MAX_EVENTS events (0 or absent: never), or on SIGINT/SIGTERM.
//
// Built with Debian's nats.go (golang-github-nats-io-go-nats-dev, 1.22),
// offline, in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o rs-example-consumer-go ./examples/go
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// event holds the CloudEvent members this example uses; unknown members
// are ignored, as the contract (docs/events.md, Versioning) requires.
type event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Subject string `json:"subject"`
	Runseq  int64  `json:"runseq"`
	Tenant  string `json:"tenant"`
}

func main() {
	if len(os.Args) < 4 || len(os.Args) > 5 {
		fmt.Fprintln(os.Stderr, "usage: rs-example-consumer-go NATS_URL TENANT CONSUMER [MAX_EVENTS]")
		os.Exit(2)
	}
	url, tenant, consumer := os.Args[1], os.Args[2], os.Args[3]
	max := int64(0)
	if len(os.Args) == 5 {
		n, err := strconv.ParseInt(os.Args[4], 10, 64)
		if err != nil || n < 0 {
			fmt.Fprintln(os.Stderr, "MAX_EVENTS: must be an integer >= 0")
			os.Exit(2)
		}
		max = n
	}
	if err := run(url, tenant, consumer, max); err != nil {
		fmt.Fprintln(os.Stderr, "rs-example-consumer-go:", err)
		os.Exit(1)
	}
}

func run(url, tenant, consumer string, max int64) error {
	user := os.Getenv("RS_NATS_USER")
	opts := []nats.Option{nats.Name("rs-example-consumer-go"), nats.MaxReconnects(-1)}
	if user != "" {
		// A team may only receive on its own inbox prefix (docs/operations.md).
		opts = append(opts, nats.UserInfo(user, os.Getenv("RS_NATS_PASSWORD")),
			nats.CustomInboxPrefix("_INBOX_"+user))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()

	// No $JS.API.INFO call: team users are not granted it.
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	// Bind to the existing durable (the grant created it): no create call,
	// which the team's permissions would refuse for nats.go's subject.
	sub, err := js.PullSubscribe("runs."+tenant+".>", consumer, nats.Bind("RUNS", consumer), nats.ManualAck())
	if err != nil {
		return fmt.Errorf("bind to consumer %s on RUNS: %w", consumer, err)
	}
	defer sub.Unsubscribe()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	seen := make(map[string]bool)
	var count int64
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		msgs, err := sub.Fetch(64, nats.MaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			continue // nothing now
		}
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		for _, m := range msgs {
			var ev event
			if err := json.Unmarshal(m.Data, &ev); err != nil || ev.ID == "" {
				// Not a CloudEvent we can read: never retry it forever.
				fmt.Fprintf(os.Stderr, "skipping undecodable message on %s\n", m.Subject)
				_ = m.Term()
				continue
			}
			if !seen[ev.ID] {
				seen[ev.ID] = true
				// The header gives the short type without parsing JSON.
				fmt.Printf("%d %s %s\n", ev.Runseq, m.Header.Get("Runstream-Type"), ev.Subject)
			}
			if err := m.AckSync(); err != nil {
				return fmt.Errorf("ack %s: %w", ev.ID, err)
			}
			count++
			if max > 0 && count >= max {
				return nil
			}
		}
	}
}
