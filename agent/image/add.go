package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxConfig bounds the config and manifest blobs read into memory.
const maxConfig = 8 << 20

// source is an image at its origin: its manifest as the origin has it
// (Docker or OCI media types) and a way to open its blobs.
type source struct {
	digest   string // manifest digest at the origin
	index    string // digest of the index it was picked from, if any
	raw      []byte // the manifest's bytes
	manifest *v1.Manifest
	open     func(h v1.Hash) (io.ReadCloser, error)
}

// imageSource is the source of a go-containerregistry image (remote or
// layout). Its blobs are read only when the store lacks them.
func imageSource(img v1.Image) (*source, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	open := func(h v1.Hash) (io.ReadCloser, error) {
		l, err := img.LayerByDigest(h)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	return &source{digest: d.String(), raw: raw, manifest: m, open: open}, nil
}

// ociLayerType maps a layer media type to its OCI name; the bytes stay
// the same.
func ociLayerType(mt types.MediaType) (types.MediaType, error) {
	switch mt {
	case types.DockerLayer, types.OCILayer:
		return types.OCILayer, nil
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer:
		return types.OCIUncompressedLayer, nil
	case types.OCILayerZStd:
		return mt, nil
	case types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return "", fmt.Errorf("layer media type %s is a foreign (Windows) layer", mt)
	}
	return "", fmt.Errorf("unsupported layer media type %q", mt)
}

// add stores the image src as ref: config, layer blobs, unpacked layers,
// the OCI manifest, then the record, all under the shared gc lock so that
// prune never takes what it is about to use. On failure the store holds no
// record and nothing half-written; complete blobs fetched on the way stay
// for the next try (or prune).
func (s *Store) add(ctx context.Context, ref string, src *source) (*Image, error) {
	img, err := s.addLocked(ctx, ref, src)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return img, nil
}

func (s *Store) addLocked(ctx context.Context, ref string, src *source) (*Image, error) {
	gc, err := s.sharedGC(ctx)
	if err != nil {
		return nil, err
	}
	defer gc.Release()
	m := src.manifest
	switch m.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2, "":
	default:
		return nil, fmt.Errorf("manifest media type %q is not an image manifest", m.MediaType)
	}
	if !m.Config.MediaType.IsConfig() {
		return nil, fmt.Errorf("config media type %q is not an image config (an artifact, not an image?)", m.Config.MediaType)
	}
	cfgDigest := m.Config.Digest.String()
	if _, err := s.fetchBlob(ctx, cfgDigest, func() (io.ReadCloser, error) { return src.open(m.Config.Digest) }, nil); err != nil {
		return nil, fmt.Errorf("config %s: %w", short(cfgDigest), err)
	}
	rawCfg, err := s.readBlob(cfgDigest, maxConfig)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	rec, err := s.describe(ref, src, cf)
	if err != nil {
		return nil, err
	}
	if err := s.fetchLayers(ctx, rec, src); err != nil {
		return nil, err
	}
	if err := s.storeOCI(ctx, rec, src, cf, rawCfg); err != nil {
		return nil, err
	}
	if err := s.put(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// describe makes the record of src, with OCI layer media types.
func (s *Store) describe(ref string, src *source, cf *v1.ConfigFile) (*Image, error) {
	if cf.OS != "" && cf.OS != "linux" {
		return nil, fmt.Errorf("image is for %s, not linux", cf.OS)
	}
	ls := src.manifest.Layers
	if len(ls) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest has %d layers but the config lists %d diff ids", len(ls), len(cf.RootFS.DiffIDs))
	}
	rec := &Image{Ref: ref, Digest: src.digest, Index: src.index, ConfigDigest: src.manifest.Config.Digest.String(), Created: time.Now().UTC(),
		Config: Config{Env: cf.Config.Env, User: cf.Config.User, WorkingDir: cf.Config.WorkingDir,
			Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd}}
	for i, d := range ls {
		mt, err := ociLayerType(d.MediaType)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", short(d.Digest.String()), err)
		}
		if err := checkDigest(cf.RootFS.DiffIDs[i].String()); err != nil {
			return nil, fmt.Errorf("layer %s: diff id: %w", short(d.Digest.String()), err)
		}
		rec.Layers = append(rec.Layers, Layer{Digest: d.Digest.String(), DiffID: cf.RootFS.DiffIDs[i].String(), MediaType: string(mt), Size: d.Size})
	}
	if !s.fits(s.lowerDirs(rec)) {
		rec.Flat = chainID(rec.Layers)
	}
	return rec, nil
}

// chainID names the merge of layers (hex), like containerd's ChainID.
func chainID(layers []Layer) string {
	h := sha256.New()
	for _, l := range layers {
		io.WriteString(h, l.DiffID+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fetchLayers downloads and unpacks the layers of rec, a few at a time.
func (s *Store) fetchLayers(ctx context.Context, rec *Image, src *source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := s.newProgress(rec.Ref, rec.Layers)
	defer p.finish()
	sem := make(chan struct{}, s.opts.Jobs)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	fail := func(err error) {
		once.Do(func() { first = err; cancel(err) })
	}
	for i, l := range rec.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := s.fetchLayer(ctx, rec, src, i, p); err != nil {
				fail(fmt.Errorf("layer %s: %w", short(l.Digest), err))
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec.Flat != "" {
		if _, err := s.flatten(ctx, rec.Flat, rec.Layers); err != nil {
			return fmt.Errorf("flatten %d layers: %w", len(rec.Layers), err)
		}
	}
	return nil
}

func (s *Store) fetchLayer(ctx context.Context, rec *Image, src *source, i int, p *progress) error {
	l := rec.Layers[i]
	h, err := v1.NewHash(l.Digest)
	if err != nil {
		return err
	}
	// A layer already unpacked needs no blob: it was verified when unpacked.
	if rec.Flat == "" && exists(s.layerPath(l.DiffID)) && exists(s.blobPath(l.Digest)) {
		p.update(i, stateDone, 0)
		return nil
	}
	p.update(i, stateFetching, 0)
	fetched, err := s.fetchBlob(ctx, l.Digest, func() (io.ReadCloser, error) { return src.open(h) }, func(n int) { p.update(i, stateFetching, int64(n)) })
	if err != nil {
		p.update(i, stateFailed, 0)
		return err
	}
	if rec.Flat != "" {
		p.update(i, stateDone, 0)
		return nil
	}
	p.update(i, stateUnpacking, 0)
	began := time.Now()
	unpacked, err := s.unpack(ctx, l)
	if err != nil {
		p.update(i, stateFailed, 0)
		return err
	}
	if unpacked && s.observer != nil {
		s.observer.Unpacked(time.Since(began))
	}
	if !fetched && !unpacked {
		p.update(i, stateDone, 0)
	} else {
		p.update(i, stateNew, 0)
	}
	return nil
}

// storeOCI writes the image's manifest with OCI media types, converting a
// Docker one with go-containerregistry's mutate over the stored blobs (no
// second download), and sets rec.Manifest.
func (s *Store) storeOCI(ctx context.Context, rec *Image, src *source, cf *v1.ConfigFile, rawCfg []byte) error {
	rawManifest, configBytes := src.raw, rawCfg
	if !isOCI(src.manifest) {
		img, err := s.convert(rec, cf)
		if err != nil {
			return fmt.Errorf("convert to OCI: %w", err)
		}
		if rawManifest, err = img.RawManifest(); err != nil {
			return fmt.Errorf("convert to OCI: %w", err)
		}
		if configBytes, err = img.RawConfigFile(); err != nil {
			return fmt.Errorf("convert to OCI: %w", err)
		}
	}
	var err error
	if rec.ConfigDigest, err = s.putBlob(ctx, configBytes); err != nil {
		return err
	}
	rec.Manifest, err = s.putBlob(ctx, rawManifest)
	return err
}

// putBlob stores b and returns its digest.
func (s *Store) putBlob(ctx context.Context, b []byte) (string, error) {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	_, err := s.fetchBlob(ctx, d, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, nil)
	return d, err
}

func isOCI(m *v1.Manifest) bool {
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		return false
	}
	for _, l := range m.Layers {
		if !strings.HasPrefix(string(l.MediaType), "application/vnd.oci.") {
			return false
		}
	}
	return true
}

// convert builds the OCI form of rec from stored blobs.
func (s *Store) convert(rec *Image, cf *v1.ConfigFile) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	adds := make([]mutate.Addendum, len(rec.Layers))
	for i, l := range rec.Layers {
		adds[i] = mutate.Addendum{Layer: &storedLayer{s, l}, MediaType: types.MediaType(l.MediaType)}
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	// The original config (history, diff ids) replaces the one Append built.
	return mutate.ConfigFile(img, cf)
}

// storedLayer is a layer blob in the store as a go-containerregistry layer.
type storedLayer struct {
	s *Store
	l Layer
}

func (sl *storedLayer) Digest() (v1.Hash, error) { return v1.NewHash(sl.l.Digest) }
func (sl *storedLayer) DiffID() (v1.Hash, error) { return v1.NewHash(sl.l.DiffID) }
func (sl *storedLayer) Size() (int64, error)     { return sl.l.Size, nil }
func (sl *storedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(sl.l.MediaType), nil
}
func (sl *storedLayer) Compressed() (io.ReadCloser, error) {
	return os.Open(sl.s.blobPath(sl.l.Digest))
}
func (sl *storedLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("stored layers are read compressed")
}

var _ v1.Layer = (*storedLayer)(nil)

func short(digest string) string {
	d := strings.TrimPrefix(digest, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}
