package ui

import (
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
)

// reviewCache keeps the answers of TokenReviews and SubjectAccessReviews
// for a short while, so that a page listing 1,000 apps, and the page
// reloads and event streams that follow it, do not each ask the API server
// again. It is bounded: when full, the entry used least recently goes, so
// a stream of made-up tokens cannot grow the process. It is apimachinery's
// LRUExpireCache (what the API server's own authentication caches use),
// typed; a TTL or a size of 0 or less turns it off.
type reviewCache[V any] struct {
	ttl time.Duration
	max int
	lru *cache.LRUExpireCache // nil: off
}

// clockFunc is a cache.Clock.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

func newReviewCache[V any](ttl time.Duration, max int, now func() time.Time) *reviewCache[V] {
	c := &reviewCache[V]{ttl: ttl, max: max}
	if ttl > 0 && max > 0 {
		c.lru = cache.NewLRUExpireCacheWithClock(max, clockFunc(now))
	}
	return c
}

// get returns the value stored for key unless it has expired.
func (c *reviewCache[V]) get(key string) (V, bool) {
	var zero V
	if c.lru == nil {
		return zero, false
	}
	v, ok := c.lru.Get(key)
	if !ok {
		return zero, false
	}
	return v.(V), true
}

// put stores val for key for the cache's TTL, evicting the entry used
// least recently when the cache is full.
func (c *reviewCache[V]) put(key string, val V) {
	if c.lru != nil {
		c.lru.Add(key, val, c.ttl)
	}
}

// len returns the number of entries not expired.
func (c *reviewCache[V]) len() int {
	if c.lru == nil {
		return 0
	}
	return len(c.lru.Keys())
}
