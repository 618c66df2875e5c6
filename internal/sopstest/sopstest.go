// Package sopstest encrypts files with the sops library, as `sops -e` does,
// for tests and for the example repository. Only age recipients: that is
// all the examples need.
package sopstest

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"time"

	"filippo.io/age"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/stores/dotenv"
	"github.com/getsops/sops/v3/stores/ini"
	sopsjson "github.com/getsops/sops/v3/stores/json"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
)

// Generate returns a new age identity (the private key line) and its
// recipient (the public key).
func Generate() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", err
	}
	return id.String(), id.Recipient().String(), nil
}

type store interface {
	LoadPlainFile([]byte) (sops.TreeBranches, error)
	EmitEncryptedFile(sops.Tree) ([]byte, error)
}

// Encrypt encrypts plain, a YAML, JSON, dotenv or INI document chosen by
// the extension of name, or any other file as sops encrypts a binary file,
// for the age recipients. Like sops' default, keys ending in _unencrypted
// stay in clear.
func Encrypt(name string, plain []byte, recipients ...string) ([]byte, error) {
	var st store
	switch filepath.Ext(name) {
	case ".yaml", ".yml":
		st = &sopsyaml.Store{}
	case ".json":
		st = &sopsjson.Store{}
	case ".env":
		st = &dotenv.Store{}
	case ".ini":
		st = ini.NewStore(&config.INIStoreConfig{})
	default:
		st = sopsjson.NewBinaryStore(&config.JSONBinaryStoreConfig{})
	}
	branches, err := st.LoadPlainFile(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dataKey := make([]byte, 32)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, err
	}
	var group sops.KeyGroup
	for _, r := range recipients {
		k, err := sopsage.MasterKeyFromRecipient(r)
		if err != nil {
			return nil, err
		}
		if err := k.Encrypt(dataKey); err != nil {
			return nil, err
		}
		group = append(group, k)
	}
	tree := sops.Tree{
		Branches: branches,
		Metadata: sops.Metadata{KeyGroups: []sops.KeyGroup{group}, Version: "3.13.3", UnencryptedSuffix: sops.DefaultUnencryptedSuffix},
	}
	cipher := aes.NewCipher()
	mac, err := tree.Encrypt(dataKey, cipher)
	if err != nil {
		return nil, err
	}
	tree.Metadata.LastModified = time.Now().UTC()
	tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return nil, err
	}
	return st.EmitEncryptedFile(tree)
}
