ALTER TABLE "leases" ADD COLUMN "session_id" text;--> statement-breakpoint
CREATE INDEX "leases_session_idx" ON "leases" USING btree ("session_id","expires_at");