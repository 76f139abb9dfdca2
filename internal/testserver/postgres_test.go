package testserver

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Two tests get databases of their own on one server: a table made in one
// is not seen from the other, and each DSN connects.
func TestPostgresDatabasePerTest(t *testing.T) {
	a, b := Postgres(t), Postgres(t)
	if a.Database == b.Database || a.DSN == b.DSN {
		t.Fatalf("two calls gave one database: %q and %q", a.DSN, b.DSN)
	}
	a.Exec(t, "CREATE TABLE only_here (id text PRIMARY KEY)", "INSERT INTO only_here VALUES ('x')")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'").Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("the other database sees the table: n=%d err=%v", n, err)
	}
	connA, err := pgx.Connect(ctx, a.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer connA.Close(ctx)
	var id string
	if err := connA.QueryRow(ctx, "SELECT id FROM only_here").Scan(&id); err != nil || id != "x" {
		t.Fatalf("read back %q, %v", id, err)
	}
	var user string
	if err := connA.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != pgUser {
		t.Fatalf("connected as %q (%v), want %q", user, err, pgUser)
	}
}
