CREATE TABLE "connections" (
	"node_id" text NOT NULL,
	"session_id" text NOT NULL,
	"lease_id" text,
	"remote" text,
	"opened_at" timestamp with time zone NOT NULL,
	"closed_at" timestamp with time zone,
	"bytes_in" bigint,
	"bytes_out" bigint,
	CONSTRAINT "connections_node_id_session_id_pk" PRIMARY KEY("node_id","session_id")
);
--> statement-breakpoint
ALTER TABLE "connections" ADD CONSTRAINT "connections_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "connections_lease_idx" ON "connections" USING btree ("lease_id");--> statement-breakpoint
CREATE INDEX "connections_closed_idx" ON "connections" USING btree ("closed_at");