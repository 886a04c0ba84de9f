! dmlp: a trained dmlp network inside Fortran code, over the C interface of
! include/dmlp/infer.h (ISO_C_BINDING).
!
!   use dmlp
!   type(dmlp_net) :: net
!   real(c_float), allocatable :: x(:,:), y(:,:)     ! x(inputs, n), y(outputs, n)
!   integer :: stat
!   character(len=256) :: errmsg
!   call net%load("runs/x/best.h5", stat, errmsg)
!   if (stat /= 0) stop errmsg
!   allocate(x(net%inputs(), n), y(net%outputs(), n))
!   call net%predict(x, y, stat, errmsg)
!   call net%free()
!
! A column of x is one sample: Fortran's column-major x(inputs, n) is exactly the C
! interface's row-major n x inputs, so nothing is copied. predict is thread-safe on a
! shared net (call it from your own OpenMP loops) and gives the bits of `dmlp predict`.
! stat is 0 on success; otherwise errmsg says why (the file, the argument), as Fortran's
! own I/O statements do. No MPI is needed.
module dmlp
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_associated, c_char, &
                                         c_float, c_size_t, c_int, c_null_char
  implicit none
  private
  public :: dmlp_net, c_float

  type :: dmlp_net
    type(c_ptr) :: handle = c_null_ptr
  contains
    procedure :: load => net_load
    procedure :: predict => net_predict
    procedure :: inputs => net_inputs
    procedure :: outputs => net_outputs
    procedure :: free => net_free
  end type dmlp_net

  integer, parameter :: msg_len = 1024

  interface
    function c_load(path, err, errlen) bind(c, name="dmlp_net_load") result(net)
      import :: c_ptr, c_char, c_size_t
      character(kind=c_char), intent(in) :: path(*)
      character(kind=c_char), intent(out) :: err(*)
      integer(c_size_t), value :: errlen
      type(c_ptr) :: net
    end function c_load
    function c_inputs(net) bind(c, name="dmlp_net_inputs") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: net
      integer(c_size_t) :: n
    end function c_inputs
    function c_outputs(net) bind(c, name="dmlp_net_outputs") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: net
      integer(c_size_t) :: n
    end function c_outputs
    function c_predict(net, n, x, y, err, errlen) bind(c, name="dmlp_net_predict") result(rc)
      import :: c_ptr, c_size_t, c_float, c_char, c_int
      type(c_ptr), value :: net
      integer(c_size_t), value :: n
      real(c_float), intent(in) :: x(*)
      real(c_float), intent(inout) :: y(*)
      character(kind=c_char), intent(out) :: err(*)
      integer(c_size_t), value :: errlen
      integer(c_int) :: rc
    end function c_predict
    subroutine c_free(net) bind(c, name="dmlp_net_free")
      import :: c_ptr
      type(c_ptr), value :: net
    end subroutine c_free
  end interface

contains

  ! The C message (NUL-ended) as a Fortran string, blank-padded into errmsg.
  subroutine set_errmsg(buf, errmsg)
    character(kind=c_char), intent(in) :: buf(msg_len)
    character(len=*), intent(inout), optional :: errmsg
    integer :: i
    if (.not. present(errmsg)) return
    errmsg = ""
    do i = 1, min(msg_len, len(errmsg))
      if (buf(i) == c_null_char) exit
      errmsg(i:i) = buf(i)
    end do
  end subroutine set_errmsg

  ! Loads the network of a dmlp checkpoint; a net already loaded is freed first.
  subroutine net_load(self, path, stat, errmsg)
    class(dmlp_net), intent(inout) :: self
    character(len=*), intent(in) :: path
    integer, intent(out) :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(kind=c_char) :: buf(msg_len)
    call self%free()
    buf = c_null_char
    self%handle = c_load(trim(path) // c_null_char, buf, int(msg_len, c_size_t))
    stat = 0
    if (.not. c_associated(self%handle)) then
      stat = 1
      call set_errmsg(buf, errmsg)
    end if
  end subroutine net_load

  integer function net_inputs(self)
    class(dmlp_net), intent(in) :: self
    net_inputs = int(c_inputs(self%handle))
  end function net_inputs

  integer function net_outputs(self)
    class(dmlp_net), intent(in) :: self
    net_outputs = int(c_outputs(self%handle))
  end function net_outputs

  ! y(:, j) = the network on x(:, j) for every column j. x(inputs, n), y(outputs, n);
  ! a non-contiguous section is copied in (and y out) by the compiler; whole arrays and
  ! column ranges x(:, i:j) go through without a copy. Wrong shapes give stat 2.
  subroutine net_predict(self, x, y, stat, errmsg)
    class(dmlp_net), intent(in) :: self
    real(c_float), contiguous, intent(in) :: x(:, :)
    real(c_float), contiguous, intent(inout) :: y(:, :)
    integer, intent(out) :: stat
    character(len=*), intent(inout), optional :: errmsg
    character(kind=c_char) :: buf(msg_len)
    character(len=160) :: why
    integer :: inputs, outputs
    if (.not. c_associated(self%handle)) then
      stat = 2
      if (present(errmsg)) errmsg = "dmlp predict: the net is not loaded (call load first)"
      return
    end if
    inputs = self%inputs()
    outputs = self%outputs()
    if (size(x, 1) /= inputs .or. size(y, 1) /= outputs .or. size(x, 2) /= size(y, 2)) then
      stat = 2
      write (why, '(a, i0, a, i0, a, i0, a, i0, a, i0, a, i0, a)') &
        "dmlp predict: x(", size(x, 1), ", ", size(x, 2), ") and y(", size(y, 1), ", ", &
        size(y, 2), ") do not fit a net of ", inputs, " inputs and ", outputs, " outputs"
      if (present(errmsg)) errmsg = why
      return
    end if
    buf = c_null_char
    stat = int(c_predict(self%handle, int(size(x, 2), c_size_t), x, y, buf, &
                         int(msg_len, c_size_t)))
    if (stat /= 0) call set_errmsg(buf, errmsg)
  end subroutine net_predict

  subroutine net_free(self)
    class(dmlp_net), intent(inout) :: self
    if (c_associated(self%handle)) call c_free(self%handle)
    self%handle = c_null_ptr
  end subroutine net_free

end module dmlp
