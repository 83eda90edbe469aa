package image

import "time"

// Observer is told what the store fetched and unpacked, for metrics.
// Its methods are called from the pulls' goroutines and must not block.
type Observer interface {
	// Fetched reports an image brought into the store from source
	// ("registry" or "layout"); err is nil when it worked.
	Fetched(source string, err error)
	// Unpacked reports one layer unpacked, and how long that took.
	Unpacked(d time.Duration)
}

// SetObserver makes o receive the store's fetches and unpacks. Call it
// before the store is used.
func (s *Store) SetObserver(o Observer) { s.observer = o }

func (s *Store) fetched(source string, err error) {
	if s.observer != nil {
		s.observer.Fetched(source, err)
	}
}
