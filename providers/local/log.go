package local

import (
	"context"

	"github.com/go-logr/logr"
)

func ctrlLog(ctx context.Context) logr.Logger { return logr.FromContextOrDiscard(ctx) }
