package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/model"
)

func newOrphansCommand(g *global) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "orphans",
		Short: "List cloud resources with this cluster's ownership marks that belong to no Service",
		Long: `List what the operator's last orphan scan found: cloud resources that carry this
cluster's ownership marks but whose Service is gone (a finalizer removed by hand, a
deletion that never finished). The operator scans every --orphan-scan-interval and
writes the result to the ConfigMap portico-orphans in its namespace
(--operator-namespace); it deletes orphans only when started with --delete-orphans.`,
		Example: `  kubectl lb orphans
  kubectl lb orphans -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.orphans(cmd.Context(), output)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func (g *global) orphans(ctx context.Context, output string) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{}
	err = c.Reader.Get(ctx, client.ObjectKey{Namespace: g.operatorNS, Name: model.OrphanReportName}, cm)
	if apierrors.IsNotFound(err) {
		fmt.Fprintf(g.opts.ErrOut, "No orphan scan has reported yet: portico-operator writes ConfigMap %s/%s after its first scan (--orphan-scan-interval; cloud backends only).\n",
			g.operatorNS, model.OrphanReportName)
		return g.checkOperator(ctx, c, "", nil).Down
	}
	if err != nil {
		return apiError(err, "get", "configmaps", g.operatorNS)
	}
	var rep model.OrphanReport
	if err := json.Unmarshal([]byte(cm.Data[model.OrphanReportKey]), &rep); err != nil {
		return fmt.Errorf("ConfigMap %s/%s does not hold an orphan report: %w", g.operatorNS, model.OrphanReportName, err)
	}
	sort.Slice(rep.Orphans, func(i, j int) bool {
		a, b := rep.Orphans[i], rep.Orphans[j]
		if a.Class != b.Class {
			return a.Class < b.Class
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.ID < b.ID
	})
	if done, err := printObject(g.opts.Out, output, rep); done || err != nil {
		return err
	}
	now := g.opts.Now()
	deletion := "off: report only (--delete-orphans deletes what two scans in a row find)"
	if rep.Deletion {
		deletion = "on (--delete-orphans)"
	}
	fmt.Fprintf(g.opts.ErrOut, "Cluster %s, scanned %s ago; deletion %s.\n", rep.ClusterID, age(metav1.NewTime(rep.ScannedAt), now), deletion)
	for _, class := range sortedKeys(rep.Errors) {
		fmt.Fprintf(g.opts.ErrOut, "Warning: %s could not be scanned: %s\n", class, rep.Errors[class])
	}
	if len(rep.Orphans) == 0 {
		fmt.Fprintln(g.opts.ErrOut, "No orphans found.")
		return nil
	}
	t := newTable(g.opts.Out, "CLASS", "KIND", "ID", "SERVICE", "FIRST SEEN", "STATE")
	for _, o := range rep.Orphans {
		svc, state := o.Service, "orphaned"
		if svc == "" {
			svc = "<cluster>"
		}
		if o.Deleted {
			state = "deleted"
		}
		t.row(o.Class, o.Kind, o.ID, svc, age(metav1.NewTime(o.FirstSeen), now)+" ago", state)
	}
	return t.flush()
}
