ALTER TABLE "audit_events" ADD COLUMN "tx" "xid8" DEFAULT pg_current_xact_id() NOT NULL;--> statement-breakpoint
CREATE INDEX "audit_events_tx_idx" ON "audit_events" USING btree ("tx","seq");