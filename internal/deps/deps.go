//go:build tools

// Package deps pins the module's chosen dependencies before every package imports them.
package deps

import (
	_ "github.com/casbin/casbin/v2"
	_ "github.com/gin-gonic/gin"
	_ "github.com/google/uuid"
	_ "github.com/minio/minio-go/v7"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/ulikunitz/xz/lzma"
	_ "go.etcd.io/bbolt"
	_ "go.mongodb.org/mongo-driver/v2/mongo"
	_ "golang.org/x/crypto/argon2"
)
