// Package secrets gets secret values into deliver's pipeline and keeps them
// out of everything deliver prints.
//
// Three parts work together:
//
//   - SOPS decrypts SOPS files (YAML, JSON, dotenv, INI, binary) in memory
//     with age, PGP and Vault transit keys given explicitly in SOPSOptions;
//     the process environment is read only when asked, and never written.
//     DecryptManifest handles Secret manifests encrypted in place, and
//     CheckDecrypted refuses objects that still carry SOPS metadata.
//   - Vault is a logged-in Vault client (token, token file, Kubernetes or
//     AppRole auth) that renews its token and logs in again when it
//     expires. A Resolver replaces the refs helmfile and vals users write,
//     ref+vault://secret/data/app#/db/password and
//     ref+sops://secrets/app.enc.yaml#/db/password, in values files and
//     objects, reading each Vault path and SOPS file once per run.
//   - Redactor is given every value that came out of SOPS or Vault and masks
//     them (and their base64 forms) in errors, logs (Handler), and any
//     output stream (Writer).
//
// No error of this package carries a secret value: errors name the file or
// the ref, and wrap the sentinel errors (ErrNoKey, ErrMACMismatch,
// ErrNotFound, ErrPermissionDenied, ErrSealed, …) for errors.Is.
package secrets
