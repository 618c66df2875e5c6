package ui

import (
	"container/list"
	"sync"
	"time"
)

// reviewCache keeps the answers of TokenReviews and SubjectAccessReviews
// for a short while, so that a page listing 1,000 apps, and the page
// reloads and event streams that follow it, do not each ask the API server
// again. It is bounded: when full, the entry used least recently goes, so
// a stream of made-up tokens cannot grow the process.
type reviewCache[V any] struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List // of *cacheEntry[V], most recently used first
	byKey map[string]*list.Element
}

type cacheEntry[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newReviewCache[V any](ttl time.Duration, max int, now func() time.Time) *reviewCache[V] {
	return &reviewCache[V]{ttl: ttl, max: max, now: now, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the value stored for key unless it has expired.
func (c *reviewCache[V]) get(key string) (V, bool) {
	var zero V
	if c.ttl <= 0 {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*cacheEntry[V])
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.byKey, key)
		return zero, false
	}
	c.order.MoveToFront(el)
	return e.val, true
}

// put stores val for key for the cache's TTL, evicting the entry used
// least recently when the cache is full.
func (c *reviewCache[V]) put(key string, val V) {
	if c.ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.now().Add(c.ttl)
	if el, ok := c.byKey[key]; ok {
		e := el.Value.(*cacheEntry[V])
		e.val, e.expires = val, exp
		c.order.MoveToFront(el)
		return
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry[V]{key: key, val: val, expires: exp})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry[V]).key)
	}
}

// len returns the number of entries, expired ones included.
func (c *reviewCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
