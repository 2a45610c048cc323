package tui

import (
	"context"
	"fmt"
	"sort"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/config"
)

// Defaults for Options.
const (
	DefaultMaxRefreshes = 32          // refreshes in flight at once
	DefaultMaxBackoff   = time.Minute // the longest wait between attempts at an unreachable site
)

// Options configure the console.
type Options struct {
	// Refresh is how often each site is polled; data older than two
	// periods is marked stale. Zero means config.DefaultRefresh (Run uses
	// sites.toml's [console] refresh).
	Refresh time.Duration
	// Clock tells the time shown and used for ages; nil means time.Now.
	Clock func() time.Time
	// NoColor renders without any colour or other escape code. Run sets
	// it when $NO_COLOR is set and not empty.
	NoColor bool
	// MaxRefreshes bounds the refreshes in flight at once; zero means
	// DefaultMaxRefreshes.
	MaxRefreshes int
	// MaxBackoff caps the wait between attempts at a failing site; zero
	// means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// UserAgent is sent by the gate clients Run builds.
	UserAgent string
	// OnQuit, if set, is called by Run after the console has left the
	// terminal, with Model.QuitSummary: the runbooks still active, one
	// line per site (nil when none), for the caller to print.
	OnQuit func(summary []string)
	// Who names the person at the console, shown on the title line (the
	// SSH console sets it: "alice (operator)").
	Who string
	// ReadOnly, when set, makes the console look-only: every action that
	// would change a site is refused before its dialog opens, with this
	// text as the reason (and the gate clients refuse such calls too).
	ReadOnly string
}

// NoticeMsg puts a line on the console's message line: what the SSH
// server says to a session (shutting down, say).
type NoticeMsg struct{ Text string }

// view is the screen shown.
type view int

const (
	viewDashboard view = iota
	viewSite
	viewRunbook
)

// Model is the console's Bubble Tea model. Build it with New; it is used
// through its pointer.
type Model struct {
	opts  Options
	clock func() time.Time
	loc   *time.Location
	st    styles
	keys  keyMap

	sites  []*siteState // in configuration order
	byName map[string]*siteState

	width, height int
	view          view
	help          bool
	selected      string     // the dashboard's selected site
	current       *siteState // the site of the site and runbook views
	siteScroll    int
	rb            runbookView

	filter    textinput.Model
	filtering bool
	// troubleFirst sorts the dashboard by trouble instead of by name
	// (key t); by name is the default, so rows do not move while read.
	troubleFirst bool

	dialog *form
	flash  flash

	sem    chan struct{} // bounds the refreshes in flight
	ctx    context.Context
	cancel context.CancelFunc
	// after returns a command that delivers msg after d: tea.Tick, or a
	// recorder in tests.
	after func(d time.Duration, msg tea.Msg) tea.Cmd
}

// flash is the one-line message above the key bar: the answer to the
// last action, or an error.
type flash struct {
	text string
	err  bool
	at   time.Time
}

// New returns the console's model for sites. It does no I/O: the first
// refresh of every site is a command Init returns.
func New(sites []Site, opts Options) *Model {
	if opts.Refresh <= 0 {
		opts.Refresh = config.DefaultRefresh
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.MaxRefreshes <= 0 {
		opts.MaxRefreshes = DefaultMaxRefreshes
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	m := &Model{
		opts:   opts,
		clock:  opts.Clock,
		loc:    time.Local,
		st:     newStyles(opts.NoColor),
		keys:   newKeyMap(),
		byName: make(map[string]*siteState, len(sites)),
		width:  80,
		height: 24,
		sem:    make(chan struct{}, opts.MaxRefreshes),
		after: func(d time.Duration, msg tea.Msg) tea.Cmd {
			return tea.Tick(d, func(time.Time) tea.Msg { return msg })
		},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, s := range sites {
		if s.Timeout <= 0 {
			s.Timeout = config.DefaultSiteTimeout
		}
		ss := &siteState{Site: s}
		m.sites = append(m.sites, ss)
		m.byName[s.Name] = ss
	}
	if len(m.sites) > 0 {
		m.selected = m.sortedSites()[0].Name
	}
	m.filter = m.st.newInput("/", "site name")
	return m
}

// Close stops every command still running (refreshes, the runbook's
// event stream). Run calls it when the program ends.
func (m *Model) Close() { m.cancel() }

// clockTickMsg redraws the screen every second, so ages stay true.
type clockTickMsg struct{}

// Init starts the first refresh of every site and the clock.
func (m *Model) Init() tea.Cmd {
	cmds := make([]tea.Cmd, 0, len(m.sites)+1)
	for _, s := range m.sites {
		cmds = append(cmds, m.startRefresh(s))
	}
	cmds = append(cmds, m.after(time.Second, clockTickMsg{}))
	return tea.Batch(cmds...)
}

// Update handles a message. It never does I/O: calls to the gates are
// in the commands it returns.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.filter.SetWidth(max(10, min(40, m.width-20)))
		if m.dialog != nil {
			m.dialog.resize(m.width)
		}
		return m, nil
	case tea.KeyPressMsg:
		return m, m.handleKey(msg)
	case tea.PasteMsg:
		return m, m.paste(msg)
	case NoticeMsg:
		m.setFlash(msg.Text, true)
		return m, nil
	case clockTickMsg:
		return m, m.after(time.Second, clockTickMsg{})
	case refreshDueMsg:
		return m, m.onRefreshDue(msg)
	case refreshedMsg:
		return m, m.onRefreshed(msg)
	case modeAnswerMsg:
		return m, m.onModeAnswer(msg)
	case jobsAnswerMsg:
		return m, m.onJobsAnswer(msg)
	case scheduleAnswerMsg:
		return m, m.onScheduleAnswer(msg)
	case runbookLoadedMsg:
		return m, m.onRunbookLoaded(msg)
	case auditLoadedMsg:
		return m, m.onAuditLoaded(msg)
	case runbookAnswerMsg:
		return m, m.onRunbookAnswer(msg)
	case streamEventMsg, streamErrorMsg, streamEndedMsg, streamClosedMsg, streamRestartMsg:
		return m, m.onStream(msg)
	}
	return m, nil
}

// handleKey routes a key press: ctrl+c always quits; then the dialog, the
// filter field and the help screen get it before the view does.
func (m *Model) handleKey(k tea.KeyPressMsg) tea.Cmd {
	if key.Matches(k, m.keys.ForceQuit) {
		return m.quit()
	}
	m.flash = flash{} // a message lasts until the next key
	switch {
	case m.dialog != nil:
		return m.dialogKey(k)
	case m.filtering:
		return m.filterKey(k)
	case m.help:
		switch {
		case key.Matches(k, m.keys.Quit):
			return m.quit()
		case key.Matches(k, m.keys.Help, m.keys.Back):
			m.help = false
		}
		return nil
	}
	switch {
	case key.Matches(k, m.keys.Quit):
		return m.quit()
	case key.Matches(k, m.keys.Help):
		m.help = true
		return nil
	case key.Matches(k, m.keys.RefreshNow):
		return m.refreshAllNow()
	}
	switch m.view {
	case viewSite:
		return m.siteKey(k)
	case viewRunbook:
		return m.runbookKey(k)
	}
	return m.dashboardKey(k)
}

// paste gives pasted text to the text field that has the focus, if any.
func (m *Model) paste(msg tea.PasteMsg) tea.Cmd {
	var cmd tea.Cmd
	switch {
	case m.dialog != nil && len(m.dialog.fields) > 0 && m.dialog.fields[m.dialog.focus].kind == textField:
		fl := &m.dialog.fields[m.dialog.focus]
		fl.input, cmd = fl.input.Update(msg)
	case m.filtering:
		m.filter, cmd = m.filter.Update(msg)
	}
	return cmd
}

func (m *Model) quit() tea.Cmd {
	m.stopStream()
	m.cancel()
	return tea.Quit
}

// setFlash shows text on the flash line.
func (m *Model) setFlash(text string, isErr bool) {
	m.flash = flash{text: text, err: isErr, at: m.clock()}
}

// flashTTL is how long a message stays on the flash line, unless a key
// clears it sooner.
const flashTTL = 10 * time.Second

// tiny reports whether the terminal is too small even for the compact
// dashboard: then the screen lists the sites as far as it can.
func (m *Model) tiny() bool { return m.width < 20 || m.height < 6 }

// QuitSummary says, one line per site, which runbooks are still active
// (running, waiting, failed or interrupted) as far as the console last
// knew, and how to get back to them. The caller prints it after the
// console has left the terminal; nil when no runbook is active.
func (m *Model) QuitSummary() []string {
	var out []string
	for _, s := range m.sitesByName() {
		rb := s.runbook
		if rb == nil || !rb.Active() {
			continue
		}
		var what string
		switch rb.State {
		case api.RunbookRunning:
			what = "still running at " + rb.Step
		case api.RunbookWaiting:
			what = "still waiting for you at " + rb.Step
		case api.RunbookFailed:
			what = "still active, failed at " + rb.Step
		case api.RunbookInterrupted:
			what = "still active, interrupted at " + rb.Step
		default:
			what = "still " + string(rb.State) + " at " + rb.Step
		}
		out = append(out, fmt.Sprintf("%s on %s; `ckanops runbook %s` re-attaches", what, s.Name, s.Name))
	}
	return out
}

// sitesByName returns every site, sorted by name.
func (m *Model) sitesByName() []*siteState {
	out := append([]*siteState(nil), m.sites...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
