package audit

import (
	"fmt"
	"slices"
	"testing"
)

func uids(ds []denial) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.UID
	}
	return out
}

func numbered(from, to int) []denial {
	var out []denial
	for i := from; i < to; i++ {
		out = append(out, denial{UID: fmt.Sprint(i), Rule: "r"})
	}
	return out
}

func TestQueueDropsTheOldest(t *testing.T) {
	q := newQueue(3)
	if dropped := q.push(numbered(0, 2)...); dropped != 0 {
		t.Fatalf("dropped %d of 2 in a queue of 3", dropped)
	}
	if dropped := q.push(numbered(2, 6)...); dropped != 3 {
		t.Fatalf("dropped %d, want 3", dropped)
	}
	if got, want := q.pending(), 3; got != want {
		t.Fatalf("pending %d, want %d", got, want)
	}
	batch := q.take()
	if got, want := uids(batch), []string{"3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	if q.pending() != 3 {
		t.Fatalf("a batch in flight is pending: got %d, want 3", q.pending())
	}
	q.done(len(batch))
	if q.pending() != 0 {
		t.Fatalf("pending %d after done", q.pending())
	}
	if got := q.take(); len(got) != 0 {
		t.Fatalf("took %v from an empty queue", uids(got))
	}
	q.done(0)
}

func TestQueueRequeueKeepsTheNewest(t *testing.T) {
	q := newQueue(4)
	q.push(numbered(0, 3)...)
	batch := q.take()
	q.push(numbered(3, 6)...) // arrive while the batch is written
	if dropped := q.requeue(batch); dropped != 2 {
		t.Fatalf("requeue dropped %d, want 2", dropped)
	}
	if got, want := uids(q.take()), []string{"2", "3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("after requeue took %v, want %v (oldest first)", got, want)
	}
	// The ring still works after a requeue rebuilt it.
	q.requeue(nil)
	q.push(numbered(6, 8)...)
	if got, want := uids(q.take()), []string{"6", "7"}; !slices.Equal(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
}

func TestQueueSignalsReady(t *testing.T) {
	q := newQueue(2)
	select {
	case <-q.ready:
		t.Fatal("an empty queue is ready")
	default:
	}
	q.push(numbered(0, 1)...)
	q.push(numbered(1, 2)...) // a second signal does not block
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready signal after a push")
	}
}
