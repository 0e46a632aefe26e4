package directory

import (
	"sync"
	"time"
)

// ttlCache maps folded addresses to the entries a remote source returned,
// including "none" (negative caching: most recipients of an outbound relay
// have no certificate, and asking LDAP again for each of their messages
// would make the directory the bottleneck). When full, expired entries
// are dropped first, then an arbitrary tenth: a cache miss costs one
// search, so precise LRU bookkeeping on every hit is not worth its lock
// traffic.
type ttlCache struct {
	mu   sync.RWMutex
	max  int
	data map[string]cached
}

type cached struct {
	entries []*Entry
	expires time.Time
}

func newTTLCache(max int) *ttlCache {
	return &ttlCache{max: max, data: map[string]cached{}}
}

func (c *ttlCache) get(key string, now time.Time) ([]*Entry, bool) {
	c.mu.RLock()
	e, ok := c.data[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.entries, true
}

func (c *ttlCache) put(key string, entries []*Entry, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.data[key]; !ok && len(c.data) >= c.max {
		c.evict(expires)
	}
	c.data[key] = cached{entries: entries, expires: expires}
}

func (c *ttlCache) evict(now time.Time) {
	for k, e := range c.data {
		if !now.Before(e.expires) {
			delete(c.data, k)
		}
	}
	n := c.max / 10
	for k := range c.data {
		if len(c.data) < c.max || n <= 0 {
			break
		}
		delete(c.data, k)
		n--
	}
}

func (c *ttlCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.data)
}

// flush forgets every answer, for Reload: an operator who fixed LDAP
// expects the next lookup to see it.
func (c *ttlCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.data)
}

// seenIndex remembers, up to a bound, every certificate a remote source
// returned, keyed the ways RecipientInfos and spooled plans name them.
type seenIndex struct {
	mu   sync.RWMutex
	max  int
	byID map[string]*Entry
	ids  *idIndex
}

func newSeenIndex(max int) *seenIndex {
	return &seenIndex{max: max, byID: map[string]*Entry{}, ids: newIDIndex()}
}

func (s *seenIndex) add(e *Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[e.ID]; ok || len(s.byID) >= s.max {
		return
	}
	s.byID[e.ID] = e
	s.ids.add(e.Cert, e.Address)
}

func (s *seenIndex) entry(id string) (*Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.byID[id]
	return e, ok
}
