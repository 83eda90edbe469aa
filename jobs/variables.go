package jobs

// The variables jobrun sets in every step's environment, beside the image's
// own, the job's env and secrets. Programs that run inside jobs (jobrun
// itself among them: `jobrun local` in a job) must not read their settings
// from these names.
const (
	VarCI       = "CI"               // "true"
	VarJobrun   = "JOBRUN"           // "true"
	VarJob      = "JOBRUN_JOB"       // the job's name
	VarRepo     = "JOBRUN_REPO"      // the repository
	VarRun      = "JOBRUN_RUN"       // the run's id
	VarAttempt  = "JOBRUN_ATTEMPT"   // the attempt, from 1
	VarTrigger  = "JOBRUN_TRIGGER"   // what made the run: push, pull_request, tag, cron, manual
	VarRef      = "JOBRUN_REF"       // the ref the trigger names
	VarCronTick = "JOBRUN_CRON_TICK" // the cron tick a scheduled run is for (RFC 3339)
)

// Variables lists every variable jobrun sets in jobs (the Var constants).
func Variables() []string {
	return []string{VarCI, VarJobrun, VarJob, VarRepo, VarRun, VarAttempt, VarTrigger, VarRef, VarCronTick}
}
